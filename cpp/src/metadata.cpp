// metadata.json of an exported model file → hienet::Metadata (export/FORMAT.md, "Metadata").
#include "metadata.h"

#include "hienet/keys.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace hienet {

namespace {

using json = nlohmann_lmp::json;

std::string in_quotes(const std::string &s)
{
  return "'" + s + "'";
}

}    // namespace

Metadata parse_metadata(const std::string &text, const std::string &path)
{
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error &e) {
    throw Error("corrupt metadata.json in HIENet model file " + in_quotes(path) + " (" + e.what() +
                "); re-export it with hienet-export");
  }
  if (!root.is_object())
    throw Error("metadata.json in HIENet model file " + in_quotes(path) + " is not a JSON object");

  auto missing = [&](const char *key) {
    return Error("metadata.json in HIENet model file " + in_quotes(path) + " has no valid '" + key +
                 "' entry; re-export it with hienet-export");
  };
  // nullptr when absent
  auto find = [&](const char *key) -> const json * {
    auto it = root.find(key);
    return it == root.end() ? nullptr : &*it;
  };

  Metadata meta;
  meta.json = text;

  // The version comes first: a future format may change every other key.
  const json *v = find(metadata_keys::format_version);
  if (!v) throw missing(metadata_keys::format_version);
  if (!v->is_number_integer() || v->get<long long>() != kFormatVersion)
    throw Error("unsupported HIENet model format version " + v->dump() + " in " + path +
                " (this build reads " + std::to_string(kFormatVersion) +
                "); re-export with hienet-export");
  meta.format_version = kFormatVersion;

  v = find(metadata_keys::cutoff);
  if (!v || !v->is_number() || !(v->get<double>() > 0.0) || !std::isfinite(v->get<double>()))
    throw missing(metadata_keys::cutoff);
  meta.cutoff = v->get<double>();

  v = find(metadata_keys::num_message_passing_layers);
  if (!v || !v->is_number_integer() || v->get<long long>() < 0 || v->get<long long>() > 1000)
    throw missing(metadata_keys::num_message_passing_layers);
  meta.num_message_passing_layers = v->get<int>();

  v = find(metadata_keys::species);
  if (!v || !v->is_array() || v->empty()) throw missing(metadata_keys::species);
  for (const auto &s : *v) {
    if (!s.is_string() || s.get_ref<const std::string &>().empty())
      throw missing(metadata_keys::species);
    meta.species.push_back(s.get<std::string>());
  }

  v = find(metadata_keys::dtype);
  if (!v || !v->is_string()) throw missing(metadata_keys::dtype);
  const auto &dtype = v->get_ref<const std::string &>();
  if (dtype != "float32" && dtype != "float64")
    throw Error("HIENet model file " + in_quotes(path) + " has dtype \"" + dtype +
                "\"; only float32 and float64 are supported");
  meta.dtype = dtype;

  // the archive digest (checked on load) and the feature widths exchanged between layers,
  // one per equivariant block
  v = find(metadata_keys::archive_digest);
  if (!v || !v->is_string() || v->get_ref<const std::string &>().rfind("sha1:", 0) != 0)
    throw missing(metadata_keys::archive_digest);
  meta.archive_digest = v->get<std::string>();

  v = find(metadata_keys::exchange_widths);
  if (!v || !v->is_array()) throw missing(metadata_keys::exchange_widths);
  for (const auto &w : *v) {
    if (!w.is_number_integer() || w.get<long long>() < 1 || w.get<long long>() > 1000000)
      throw missing(metadata_keys::exchange_widths);
    meta.exchange_widths.push_back(w.get<int>());
  }

  auto optional_string = [&](const char *key) -> std::string {
    const json *s = find(key);
    return (s && s->is_string()) ? s->get<std::string>() : std::string();
  };
  meta.hienet_version = optional_string(metadata_keys::hienet_version);
  meta.torch_version = optional_string(metadata_keys::torch_version);
  meta.model_hash = optional_string(metadata_keys::model_hash);
  meta.convolution = optional_string(metadata_keys::convolution);

  // custom TorchScript operators the file calls (e.g. "hienet::convolution")
  v = find(metadata_keys::custom_ops);
  if (v) {
    if (!v->is_array()) throw missing(metadata_keys::custom_ops);
    for (const auto &op : *v) {
      if (!op.is_string() || op.get_ref<const std::string &>().find("::") == std::string::npos)
        throw missing(metadata_keys::custom_ops);
      meta.custom_ops.push_back(op.get<std::string>());
    }
  }
  return meta;
}

}    // namespace hienet
