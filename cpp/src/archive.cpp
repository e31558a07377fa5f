// The archive digest of an exported model file (the Python twin is hienet/integrity.py).
// SHA-1 because LibTorch ships it (c10/util/hash.h): no new dependency. It detects damage
// and edits after export; it is not a signature.
#include "archive.h"

#include <c10/util/hash.h>
#include <caffe2/serialize/inline_container.h>

#include <algorithm>

namespace hienet {

namespace {

bool excluded(const std::string &name)
{
  return name == "extra/metadata.json" || name == ".data/serialization_id";
}

// SHA-1 of name, NUL, decimal size, NUL, bytes of every covered record, in name order.
std::string sha1_of_records(const std::string &path)
{
  caffe2::serialize::PyTorchStreamReader reader(path);
  std::vector<std::string> names = reader.getAllRecords();
  names.erase(std::remove_if(names.begin(), names.end(), excluded), names.end());
  std::sort(names.begin(), names.end());
  size_t total = 0;
  for (const auto &name : names) total += name.size() + 24 + reader.getRecordSize(name);
  // c10::sha1 hashes one string: the records are concatenated (one copy of the model)
  std::string message;
  message.reserve(total);
  for (const auto &name : names) {
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader.getRecord(name);
    message += name;
    message += '\0';
    message += std::to_string(size);
    message += '\0';
    message.append(static_cast<const char *>(data.get()), size);
  }
  return "sha1:" + c10::sha1(message).str();
}

}    // namespace

std::string archive_digest(const std::string &path)
{
  try {
    return sha1_of_records(path);
  } catch (const c10::Error &e) {
    std::string msg = e.what_without_backtrace();
    msg.resize(std::min(msg.find('\n'), msg.size()));
    throw Error("HIENet model file '" + path + "' cannot be read to check its integrity (" + msg +
                "): it was damaged after export; re-export it with hienet-export");
  }
}

void verify_archive(const std::string &path, const Metadata &meta)
{
  const std::string actual = archive_digest(path);
  if (actual != meta.archive_digest)
    throw Error("HIENet model file '" + path + "' was modified or damaged after export (archive "
                "digest " + actual + ", metadata says " + meta.archive_digest +
                "); re-export it with hienet-export");
}

}    // namespace hienet
