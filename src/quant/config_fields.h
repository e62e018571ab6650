// Typed reads of a quantization_config (untrusted JSON): a wrong type is a lowbit::Error naming
// the method and the key, and JSON null counts as absent (configs write "modules_to_not_convert":
// null). Several keys may name one field (AWQ's "w_bit" | "bits").
//
// Also the module-name patterns of ignore / targets / dynamic lists: a "re:" regex (Python
// re.match semantics: anchored at the start of the name, not at its end), matched with PCRE2
// under a match limit so that a hostile pattern cannot hang the loader.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lowbit::quant {

class ConfigFields {
 public:
  // `where` prefixes messages: "awq quantization_config", "compressed-tensors
  // config_groups.group_0.weights".
  ConfigFields(const nlohmann::json& j, std::string where);

  bool has(std::initializer_list<const char*> keys) const { return find(keys) != nullptr; }
  int64_t get_int(std::initializer_list<const char*> keys, int64_t fallback) const;
  bool get_bool(std::initializer_list<const char*> keys, bool fallback) const;
  std::string get_string(std::initializer_list<const char*> keys, std::string fallback) const;
  // A list of strings; a single string counts as a one-element list, nested lists are flattened
  // (optimum's modules_in_block_to_quantize is a list of lists).
  std::vector<std::string> get_strings(std::initializer_list<const char*> keys) const;
  // The object at `key` (nullptr when absent or null); fails when it is not an object.
  const nlohmann::json* get_object(const char* key) const;

  const std::string& where() const { return where_; }
  const nlohmann::json& object() const { return j_; }

 private:
  // The first key present with a non-null value, or nullptr.
  const nlohmann::json* find(std::initializer_list<const char*> keys) const;
  std::string key_name(std::initializer_list<const char*> keys) const;

  const nlohmann::json& j_;
  std::string where_;
};

// A compiled regular expression matched like Python's re.match (anchored at the start).
class NameRegex {
 public:
  // `what` names the config field in the compile error.
  NameRegex(const std::string& pattern, const std::string& what);
  bool matches_start(const std::string& name) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_, what_;
  std::shared_ptr<void> code_;  // pcre2_code_8
};

// One entry of a compressed-tensors targets/ignore list: "re:<regex>" or an exact module name
// (or a class name such as "Linear", which callers test for before matching names).
class ModulePattern {
 public:
  ModulePattern(const std::string& entry, const std::string& what);
  bool matches(const std::string& module) const;
  const std::string& entry() const { return entry_; }

 private:
  std::string entry_;
  std::shared_ptr<NameRegex> regex_;  // null for an exact name
};

}  // namespace lowbit::quant
