// The archive digest of an exported model file (the Python twin is hienet/integrity.py):
// SHA-1 over the name, size and CRC-32 of every record. LibTorch ships both (c10/util/hash.h,
// caffe2/serialize/crc_alt.h, whose functions are defined in the header: include it in this
// translation unit only), so there is no new dependency. It detects damage and edits after
// export; it is not a signature.
#include "archive.h"

#include <c10/util/hash.h>
#include <caffe2/serialize/crc_alt.h>
#include <caffe2/serialize/inline_container.h>

#include <cstdio>

#include <algorithm>

namespace hienet {

namespace {

bool excluded(const std::string &name)
{
  return name == "extra/metadata.json" || name == ".data/serialization_id";
}

// SHA-1 over "name NUL size NUL crc32-hex LF" of every covered record, in name order.
std::string sha1_of_records(const std::string &path)
{
  caffe2::serialize::PyTorchStreamReader reader(path);
  std::vector<std::string> names = reader.getAllRecords();
  names.erase(std::remove_if(names.begin(), names.end(), excluded), names.end());
  std::sort(names.begin(), names.end());
  std::string lines;
  for (const auto &name : names) {
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader.getRecord(name);
    char crc[9];
    std::snprintf(crc, sizeof crc, "%08x", crc32_fast(data.get(), size, 0));
    lines += name;
    lines += '\0';
    lines += std::to_string(size);
    lines += '\0';
    lines += crc;
    lines += '\n';
  }
  return "sha1:" + c10::sha1(lines).str();
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
