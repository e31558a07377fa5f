// Minimal JSON reader for the model's metadata.json (internal to the runtime).
// Parses the complete RFC 8259 grammar into a small value tree; throws std::runtime_error
// with the byte offset of the first syntax error.
#ifndef HIENET_JSON_H
#define HIENET_JSON_H

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hienet {
namespace json {

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  // nullptr when this is not an object or has no such key
  const Value *find(const std::string &key) const;
};

Value parse(const std::string &text);

}    // namespace json
}    // namespace hienet

#endif
