// Collects an importance matrix while a model runs (`lowbit imatrix`): for every linear layer,
// the sum over tokens of the squared input activation of each input column (in_sum2) and the
// number of tokens seen (counts), llama-imatrix's statistics, keyed by the layer's GGUF weight
// name ("model.layers.3.mlp.down_proj" -> "blk.3.ffn_down.weight"). Installed as the
// nn::LinearObserver for its lifetime. lm_head (output.weight) is left out unless asked for,
// as llama-imatrix does by default.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "io/gguf_imatrix.h"
#include "nn/linear.h"

namespace lowbit::engine {

// GGUF weight name of a llama-family linear layer prefix; "" when it is not one.
std::string gguf_weight_name(const std::string& hf_prefix);

class ImatrixCollector : public nn::LinearObserver {
 public:
  explicit ImatrixCollector(bool include_output = false);
  ~ImatrixCollector() override;  // uninstalls
  ImatrixCollector(const ImatrixCollector&) = delete;
  ImatrixCollector& operator=(const ImatrixCollector&) = delete;

  void observe(const quant::LinearLayer& layer, const float* x, int64_t m) override;

  // The statistics so far, in the imatrix GGUF layout.
  io::Imatrix result(std::vector<std::string> datasets, uint32_t chunk_count,
                     uint32_t chunk_size) const;

 private:
  struct Sums {
    std::vector<double> sum2;
    int64_t tokens = 0;
  };
  bool include_output_;
  mutable std::mutex mu_;
  std::map<std::string, Sums> sums_;
  nn::LinearObserver* previous_;
};

}  // namespace lowbit::engine
