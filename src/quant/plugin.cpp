#include "quant/plugin.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "quant/plugin_api.h"

namespace lowbit::quant {
namespace {
namespace fs = std::filesystem;

class RegistryPluginContext : public PluginContext {
 public:
  RegistryPluginContext(MethodRegistry& registry, std::string path)
      : registry_(registry), path_(std::move(path)) {}

  uint32_t host_abi_version() const override { return LOWBIT_PLUGIN_ABI_VERSION; }
  const std::string& plugin_path() const override { return path_; }

  void register_method(MethodInfo info) override {
    if (info.name.empty()) fail("registers a method with an empty name");
    if (!info.from_config) fail("method '{}' has no from_config function", info.name);
    if (const MethodInfo* existing = registry_.find(info.name))
      fail("quantization method '{}' is already registered ({})", info.name,
           existing->origin == "built-in" ? "a built-in method" : "by plugin " + existing->origin);
    info.origin = path_;
    registered_.push_back(info.name);
    registry_.add(std::move(info));
  }

  std::vector<std::string> registered() const { return registered_; }

 private:
  MethodRegistry& registry_;
  std::string path_;
  std::vector<std::string> registered_;
};

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown dynamic loader error";
}

}  // namespace

std::vector<std::string> load_plugin(MethodRegistry& registry, const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("plugin {}: no such file", path);
  if (!fs::is_regular_file(path, ec)) fail("plugin {}: not a regular file", path);
  // An absolute path stops dlopen from searching LD_LIBRARY_PATH for a bare file name.
  const std::string canonical = fs::canonical(path, ec).string();
  if (ec) fail("plugin {}: {}", path, ec.message());
  for (const MethodInfo& m : registry.methods())
    if (m.origin == canonical) return {};  // already loaded into this registry

  dlerror();
  // RTLD_NOW: a plugin built against other lowbit symbols fails here, with the missing symbol
  // named, rather than at its first call.
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) fail("plugin {}: cannot load as a shared library: {}", path, dl_error());

  dlerror();
  const auto* abi = static_cast<const uint32_t*>(dlsym(handle, LOWBIT_PLUGIN_ABI_SYMBOL));
  if (!abi)
    fail(
        "plugin {}: not a lowbit plugin: symbol '{}' is missing (define the entry point with "
        "LOWBIT_PLUGIN from quant/plugin_api.h)",
        path, LOWBIT_PLUGIN_ABI_SYMBOL);
  if (*abi != LOWBIT_PLUGIN_ABI_VERSION)
    fail(
        "plugin {}: built for plugin ABI version {}, but this lowbit expects version {} "
        "(rebuild the plugin against this lowbit's headers)",
        path, *abi, LOWBIT_PLUGIN_ABI_VERSION);
  using Entry = void (*)(PluginContext*);
  auto entry = reinterpret_cast<Entry>(dlsym(handle, LOWBIT_PLUGIN_ENTRY_SYMBOL));
  if (!entry)
    fail("plugin {}: not a lowbit plugin: entry point '{}' is missing", path,
         LOWBIT_PLUGIN_ENTRY_SYMBOL);

  // Methods are added to a copy first, so a plugin that fails half-way leaves `registry` as
  // it was.
  MethodRegistry staged = registry;
  RegistryPluginContext ctx(staged, canonical);
  try {
    entry(&ctx);
  } catch (const std::exception& e) {
    fail("plugin {}: {}", path, e.what());
  }
  registry = std::move(staged);
  return ctx.registered();
}

std::vector<std::string> split_plugin_list(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(':', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

MethodRegistry registry_with_plugins(const std::vector<std::string>& paths) {
  MethodRegistry registry = MethodRegistry::builtin();
  if (const char* env = std::getenv("LOWBIT_PLUGINS"))
    for (const std::string& p : split_plugin_list(env)) {
      try {
        load_plugin(registry, p);
      } catch (const Error& e) {
        fail("LOWBIT_PLUGINS: {}", e.what());
      }
    }
  for (const std::string& p : paths) load_plugin(registry, p);
  return registry;
}

}  // namespace lowbit::quant
