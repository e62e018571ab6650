#include "quant/config_fields.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace lowbit::quant {
using nlohmann::json;

ConfigFields::ConfigFields(const json& j, std::string where) : j_(j), where_(std::move(where)) {
  if (!j_.is_object()) fail("{}: expected a JSON object, found {}", where_, j_.type_name());
}

const json* ConfigFields::find(std::initializer_list<const char*> keys) const {
  for (const char* k : keys) {
    auto it = j_.find(k);
    if (it != j_.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

std::string ConfigFields::key_name(std::initializer_list<const char*> keys) const {
  for (const char* k : keys)
    if (j_.contains(k)) return k;
  return *keys.begin();
}

int64_t ConfigFields::get_int(std::initializer_list<const char*> keys, int64_t fallback) const {
  const json* v = find(keys);
  if (!v) return fallback;
  if (v->is_number_integer()) return v->get<int64_t>();
  // Some writers store integral values as floats (128.0).
  if (v->is_number_float() && v->get<double>() == double(int64_t(v->get<double>())))
    return int64_t(v->get<double>());
  fail("{}: '{}' is {}, expected an integer", where_, key_name(keys), v->dump());
}

bool ConfigFields::get_bool(std::initializer_list<const char*> keys, bool fallback) const {
  const json* v = find(keys);
  if (!v) return fallback;
  if (!v->is_boolean())
    fail("{}: '{}' is {}, expected true or false", where_, key_name(keys), v->dump());
  return v->get<bool>();
}

std::string ConfigFields::get_string(std::initializer_list<const char*> keys,
                                     std::string fallback) const {
  const json* v = find(keys);
  if (!v) return fallback;
  if (!v->is_string()) fail("{}: '{}' is {}, expected a string", where_, key_name(keys), v->dump());
  return v->get<std::string>();
}

std::vector<std::string> ConfigFields::get_strings(std::initializer_list<const char*> keys) const {
  const json* v = find(keys);
  std::vector<std::string> out;
  if (!v) return out;
  auto add = [&](const json& e, auto& self) -> void {
    if (e.is_string()) {
      out.push_back(e.get<std::string>());
    } else if (e.is_array()) {
      for (const json& x : e) self(x, self);
    } else {
      fail("{}: '{}' holds {}, expected strings", where_, key_name(keys), e.dump());
    }
  };
  add(*v, add);
  return out;
}

const json* ConfigFields::get_object(const char* key) const {
  const json* v = find({key});
  if (v && !v->is_object()) fail("{}: '{}' is {}, expected an object", where_, key, v->type_name());
  return v;
}

NameRegex::NameRegex(const std::string& pattern, const std::string& what)
    : pattern_(pattern), what_(what) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_ANCHORED, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail("{}: regex '{}': {} at offset {}", what, pattern, reinterpret_cast<const char*>(msg),
         err_off);
  }
  code_ =
      std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

bool NameRegex::matches_start(const std::string& name) const {
  auto* code = static_cast<pcre2_code*>(code_.get());
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create_from_pattern(code, nullptr), pcre2_match_data_free);
  std::unique_ptr<pcre2_match_context, void (*)(pcre2_match_context*)> mc(
      pcre2_match_context_create(nullptr), pcre2_match_context_free);
  // Module names are short; a pattern needing more steps than this is hostile or broken.
  pcre2_set_match_limit(mc.get(), 1'000'000);
  pcre2_set_depth_limit(mc.get(), 10'000);
  int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0, md.get(),
                       mc.get());
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(rc, msg, sizeof(msg));
  fail("{}: regex '{}' on '{}': {}", what_, pattern_, name, reinterpret_cast<const char*>(msg));
}

ModulePattern::ModulePattern(const std::string& entry, const std::string& what) : entry_(entry) {
  if (entry.rfind("re:", 0) == 0) regex_ = std::make_shared<NameRegex>(entry.substr(3), what);
}

bool ModulePattern::matches(const std::string& module) const {
  return regex_ ? regex_->matches_start(module) : module == entry_;
}

}  // namespace lowbit::quant
