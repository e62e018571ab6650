#include "engine/model_loader.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/hub.h"
#include "io/safetensors.h"
#include "models/weight_source.h"

namespace lowbit::engine {
namespace fs = std::filesystem;
using nlohmann::json;

LoadedModel::LoadedModel() = default;
LoadedModel::~LoadedModel() = default;
LoadedModel::LoadedModel(LoadedModel&&) noexcept = default;

const tokenizer::Tokenizer& LoadedModel::require_tokenizer() const {
  if (!tokenizer)
    fail("{}: no tokenizer (expected tokenizer.json or tokenizer.model next to config.json)", path);
  return *tokenizer;
}

std::vector<int32_t> LoadedModel::eos_ids() const {
  std::vector<int32_t> ids = generation.eos_ids;
  if (tokenizer)
    for (int32_t id : tokenizer->eos_ids())
      if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

namespace {

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) fail("{}: cannot open", p.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}

bool is_gguf(const fs::path& p) { return fs::is_regular_file(p) && p.extension() == ".gguf"; }

// quant_method named by config.json's quantization_config, else by a side file
// (quantize_config.json, quant_config.json); "" if none.
std::pair<std::string, json> checkpoint_quant_config(const fs::path& dir) {
  json config = read_json(dir / "config.json");
  if (config.contains("quantization_config") && config["quantization_config"].is_object()) {
    const json& q = config["quantization_config"];
    std::string method = q.value("quant_method", std::string());
    if (method.empty())
      fail("{}: quantization_config has no 'quant_method' string", (dir / "config.json").string());
    return {method, q};
  }
  // NVIDIA ModelOpt exports' hf_quant_config.json ({"quantization": {"quant_algo": ...}}).
  if (fs::exists(dir / "hf_quant_config.json"))
    return {"modelopt", read_json(dir / "hf_quant_config.json")};
  // Side files of older checkpoints, without a quant_method key: GPTQ's quantize_config.json
  // (AutoGPTQ) and AutoAWQ's quant_config.json ({"w_bit": 4, "q_group_size": 128, ...}).
  if (fs::exists(dir / "quantize_config.json")) {
    json q = read_json(dir / "quantize_config.json");
    return {q.value("quant_method", std::string("gptq")), q};
  }
  if (fs::exists(dir / "quant_config.json")) {
    json q = read_json(dir / "quant_config.json");
    return {q.value("quant_method", std::string("awq")), q};
  }
  return {"", json::object()};
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO)) {}
  void operator()(int64_t done, int64_t total) {
    if (!enabled_ || total <= 0) return;
    int width = 40, filled = int(width * done / total);
    std::string bar(size_t(filled), '#');
    bar.resize(size_t(width), '.');
    fprintf(stderr, "\rloading [%s] %3d%%", bar.c_str(), int(100 * done / total));
    if (done == total) fprintf(stderr, "\n");
    fflush(stderr);
  }

 private:
  bool enabled_;
};

}  // namespace

namespace {

// Refuses a GGUF that already holds quantized matrices: an online method quantizes float
// weights, and re-quantizing Q4_0 blocks (say) would only add error.
void require_float_gguf(const std::string& path, const std::string& method) {
  auto gguf = io::GgufFile::open(path);
  for (const TensorView& t : gguf->tensors())
    if (t.shape.size() == 2 && !traits(t.dtype).is_float)
      fail(
          "{}: --quantization {} quantizes F32/F16/BF16 weights while loading, but GGUF tensor "
          "'{}' is already quantized ({}); run the file as stored (omit --quantization) or "
          "start from an F32/F16/BF16 GGUF",
          path, method, t.name, name(t.dtype));
}

}  // namespace

std::string detect_method(const std::string& model_path, const std::string& forced,
                          const quant::MethodRegistry& registry) {
  fs::path p(model_path);
  std::string found;
  if (is_gguf(p)) {
    found = "gguf";
  } else {
    found = checkpoint_quant_config(p).first;
    if (found.empty()) found = "unquantized";
  }
  if (!registry.find(found)) {
    std::string known;
    for (const auto& m : registry.methods()) known += (known.empty() ? "" : ", ") + m.name;
    fail("{}: quantization method '{}' is not supported by this build; registered: {}", model_path,
         found, known);
  }
  if (forced.empty() || forced == found) return found;
  const quant::MethodInfo* method = registry.find(forced);
  if (!method) registry.make(forced, json::object());  // unknown-name error, listing the known
  // Online methods (int8, int4, bitsandbytes, plugins that set quantizes_online) apply to any
  // checkpoint whose weights are still floats.
  if (method->quantizes_online && found == "unquantized") return forced;
  if (method->quantizes_online && found == "gguf") {
    require_float_gguf(model_path, forced);
    return forced;
  }
  fail("{}: --quantization {} contradicts the checkpoint, which uses '{}'{}", model_path, forced,
       found,
       method->quantizes_online ? " (" + forced + " quantizes unquantized checkpoints only)" : "");
}

LoadedModel load_model(const std::string& path, const LoadOptions& options,
                       const quant::MethodRegistry& registry) {
  LoadedModel m;
  m.path = path;
  if (!fs::exists(path) && io::looks_like_hub_id(path)) {
    // "org/name[@rev][/file.gguf]": download (or reuse) the Hugging Face Hub snapshot.
    io::HubOptions hub;
    if (options.progress_bar && isatty(STDERR_FILENO))
      hub.progress = [](uint64_t done, uint64_t total, const std::string& file) {
        fprintf(stderr, "\rdownloading %s: %.1f / %.1f MB", file.c_str(), done / 1e6, total / 1e6);
        if (done == total) fprintf(stderr, "\n");
      };
    m.path = io::resolve_model(path, hub);
  }
  fs::path p(m.path);
  if (!fs::exists(p)) fail("{}: no such file or directory", m.path);
  if (fs::is_directory(p) && !fs::exists(p / "config.json"))
    fail("{}: directory has no config.json (expected a Hugging Face model directory)", m.path);
  if (!fs::is_directory(p) && !is_gguf(p))
    fail("{}: expected a Hugging Face model directory or a .gguf file", m.path);

  std::string method = detect_method(m.path, options.quantization, registry);
  if (is_gguf(p)) {
    m.gguf = io::GgufFile::open(m.path);
    m.config = models::config_from_gguf(*m.gguf);
    m.source = models::gguf_source(*m.gguf);
    m.quant = registry.make(method, json::object());
    m.tokenizer = tokenizer::load_from_gguf(*m.gguf);
    if (m.gguf->has("tokenizer.ggml.eos_token_id"))
      m.generation.eos_ids.push_back(int32_t(m.gguf->get_int("tokenizer.ggml.eos_token_id")));
    if (m.gguf->has("tokenizer.ggml.eot_token_id")) {
      int32_t eot = int32_t(m.gguf->get_int("tokenizer.ggml.eot_token_id"));
      if (std::find(m.generation.eos_ids.begin(), m.generation.eos_ids.end(), eot) ==
          m.generation.eos_ids.end())
        m.generation.eos_ids.push_back(eot);
    }
  } else {
    m.config = models::parse_hf_config(read_json(p / "config.json"), (p / "config.json").string());
    if (fs::exists(p / "generation_config.json"))
      m.generation = models::parse_generation_config(read_json(p / "generation_config.json"),
                                                     (p / "generation_config.json").string());
    m.safetensors = io::SafetensorsCheckpoint::open_dir(m.path);
    m.source = models::safetensors_source(*m.safetensors, m.path);
    m.quant = registry.make(method, checkpoint_quant_config(p).second);
    if (fs::exists(p / "tokenizer.json") || fs::exists(p / "tokenizer.model"))
      m.tokenizer = tokenizer::load_from_hf_dir(m.path);
  }
  if (m.tokenizer && m.tokenizer->vocab_size() > m.config.vocab_size)
    fail("{}: tokenizer has {} tokens but the model's vocabulary is {}", m.path,
         m.tokenizer->vocab_size(), m.config.vocab_size);
  if (!options.cpu_model) return m;
  ProgressBar bar(options.progress_bar);
  m.model = std::make_unique<models::LlamaModel>(m.config, *m.source, *m.quant,
                                                 [&](int64_t d, int64_t t) { bar(d, t); });
  return m;
}

}  // namespace lowbit::engine
