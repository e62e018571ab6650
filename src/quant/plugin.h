// Loading out-of-tree quantization methods (plugin_api.h) into a MethodRegistry.
#pragma once

#include <string>
#include <vector>

#include "quant/registry.h"

namespace lowbit::quant {

// dlopens the plugin at `path`, checks its ABI version and runs its entry point, which adds
// its methods to `registry`. Returns the names it registered. A path already loaded into this
// registry (same canonical file) is skipped. Errors (lowbit::Error) name the path: no such
// file, not a loadable shared library (with the dynamic loader's message), a missing
// lowbit_plugin_abi_version / lowbit_register_plugin symbol, an ABI version mismatch (found
// vs expected), a method name already registered, or an error thrown by the entry point.
// The library is never unloaded: the registered methods' code lives in it.
std::vector<std::string> load_plugin(MethodRegistry& registry, const std::string& path);

// The entries of a LOWBIT_PLUGINS-style list ("a.so:b.so"; empty entries are ignored).
std::vector<std::string> split_plugin_list(const std::string& list);

// MethodRegistry::builtin(), then the plugins named by LOWBIT_PLUGINS, then `paths` in order.
MethodRegistry registry_with_plugins(const std::vector<std::string>& paths);

}  // namespace lowbit::quant
