// The interface an out-of-tree quantization method implements (DESIGN.md §4, mirroring vLLM's
// quantization plugins). A plugin is a shared library that includes this header, subclasses
// QuantConfig / LinearMethod (quant_method.h), and defines its entry point with LOWBIT_PLUGIN:
//
//   #include "quant/plugin_api.h"
//   LOWBIT_PLUGIN(ctx) {
//     lowbit::quant::MethodInfo info;
//     info.name = "my_method";  ...
//     ctx->register_method(std::move(info));
//   }
//
// Loaded with `lowbit <command> --plugin path.so` or LOWBIT_PLUGINS=a.so:b.so, its methods are
// then chosen with `--quantization my_method` (or by a checkpoint whose quant_method names it)
// exactly like the built-in ones.
//
// ABI: the interface is C++ (std::string, std::function, virtual classes), so a plugin must be
// built with the same compiler family and lowbit headers as the host; the host refuses a
// plugin whose lowbit_plugin_abi_version differs from its own. Plugins call lowbit functions
// (fail(), float_values(), the kernels) unresolved and bind them at load time to the symbols
// the `lowbit` executable exports (docs/architecture.md, "Plugins").
#pragma once

#include <cstdint>
#include <string>

#include "quant/registry.h"

// Bump on any change to the layout of QuantConfig, LinearMethod, MoEMethod, LinearLayer,
// TensorSpec, MethodInfo or PluginContext.
#define LOWBIT_PLUGIN_ABI_VERSION 1u

// The two symbols every plugin exports (names used by the loader).
#define LOWBIT_PLUGIN_ABI_SYMBOL "lowbit_plugin_abi_version"
#define LOWBIT_PLUGIN_ENTRY_SYMBOL "lowbit_register_plugin"

namespace lowbit::quant {

// What the host hands to a plugin's entry point.
class PluginContext {
 public:
  virtual ~PluginContext() = default;
  virtual uint32_t host_abi_version() const = 0;
  virtual const std::string& plugin_path() const = 0;
  // Adds a method to the registry (its origin becomes the plugin's path). Throws lowbit::Error
  // when the name is already registered, naming who registered it.
  virtual void register_method(MethodInfo info) = 0;
};

}  // namespace lowbit::quant

// Defines the plugin's ABI version symbol and opens the definition of its entry point,
// `void lowbit_register_plugin(lowbit::quant::PluginContext* ctx_name)`.
#define LOWBIT_PLUGIN(ctx_name)                                                                \
  extern "C" __attribute__((visibility("default"))) const uint32_t lowbit_plugin_abi_version = \
      LOWBIT_PLUGIN_ABI_VERSION;                                                               \
  extern "C" __attribute__((visibility("default"))) void lowbit_register_plugin(               \
      ::lowbit::quant::PluginContext* ctx_name)
