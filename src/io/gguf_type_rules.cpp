// llama-quantize's per-tensor type rules (see gguf_type_rules.h), for the file types lowbit
// can write (all of llama-quantize's but Q1_0, Q2_0 and NVFP4).
#include "io/gguf_type_rules.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "core/error.h"
#include "kernels/cpu/gguf_quantize.h"

namespace lowbit::io {
namespace {

// llama.h's llama_ftype values.
enum Ftype : uint32_t {
  ALL_F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q2_K = 10,
  Q3_K_S = 11,
  Q3_K_M = 12,
  Q3_K_L = 13,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
  IQ2_XXS = 19,
  IQ2_XS = 20,
  Q2_K_S = 21,
  IQ3_XS = 22,
  IQ3_XXS = 23,
  IQ1_S = 24,
  IQ4_NL = 25,
  IQ3_S = 26,
  IQ3_M = 27,
  IQ2_S = 28,
  IQ2_M = 29,
  IQ4_XS = 30,
  IQ1_M = 31,
  BF16 = 32,
  TQ1_0 = 36,
  TQ2_0 = 37,
  MXFP4_MOE = 38,
};

constexpr GgufFileType kFileTypes[] = {
    {"F32", ALL_F32, DType::F32, false},
    {"F16", F16, DType::F16, false},
    {"BF16", BF16, DType::BF16, false},
    {"Q4_0", Q4_0, DType::Q4_0, false},
    {"Q4_1", Q4_1, DType::Q4_1, false},
    {"Q5_0", Q5_0, DType::Q5_0, false},
    {"Q5_1", Q5_1, DType::Q5_1, false},
    {"Q8_0", Q8_0, DType::Q8_0, false},
    {"Q2_K", Q2_K, DType::Q2_K, false},
    {"Q2_K_S", Q2_K_S, DType::Q2_K, true},
    {"Q3_K_S", Q3_K_S, DType::Q3_K, false},
    {"Q3_K_M", Q3_K_M, DType::Q3_K, false},
    {"Q3_K_L", Q3_K_L, DType::Q3_K, false},
    {"Q4_K_S", Q4_K_S, DType::Q4_K, false},
    {"Q4_K_M", Q4_K_M, DType::Q4_K, false},
    {"Q5_K_S", Q5_K_S, DType::Q5_K, false},
    {"Q5_K_M", Q5_K_M, DType::Q5_K, false},
    {"Q6_K", Q6_K, DType::Q6_K, false},
    {"IQ2_XXS", IQ2_XXS, DType::IQ2_XXS, true},
    {"IQ2_XS", IQ2_XS, DType::IQ2_XS, true},
    {"IQ2_S", IQ2_S, DType::IQ2_XS, true},  // llama.cpp: IQ2_S files are mostly IQ2_XS
    {"IQ2_M", IQ2_M, DType::IQ2_S, true},
    {"IQ1_S", IQ1_S, DType::IQ1_S, true},
    {"IQ1_M", IQ1_M, DType::IQ1_M, true},
    {"IQ3_XXS", IQ3_XXS, DType::IQ3_XXS, true},
    {"IQ3_XS", IQ3_XS, DType::IQ3_S, true},  // with IQ3_XXS layers
    {"IQ3_S", IQ3_S, DType::IQ3_S, false},
    {"IQ3_M", IQ3_M, DType::IQ3_S, false},
    {"IQ4_NL", IQ4_NL, DType::IQ4_NL, false},
    {"IQ4_XS", IQ4_XS, DType::IQ4_XS, false},
    {"TQ1_0", TQ1_0, DType::TQ1_0, false},
    {"TQ2_0", TQ2_0, DType::TQ2_0, false},
    {"MXFP4_MOE", MXFP4_MOE, DType::MXFP4, false},
};

enum class Category {
  kOutput,
  kTokenEmbd,
  kAttnQkv,
  kAttnKvB,
  kAttnV,
  kAttnK,
  kAttnQ,
  kAttnOutput,
  kFfnUp,
  kFfnGate,
  kFfnDown,
  kOther
};

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight")
    return Category::kTokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::kAttnQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::kAttnKvB;
  if (contains(name, "attn_v.weight")) return Category::kAttnV;
  if (contains(name, "attn_k.weight")) return Category::kAttnK;
  if (contains(name, "attn_q.weight")) return Category::kAttnQ;
  if (contains(name, "attn_output.weight")) return Category::kAttnOutput;
  if (contains(name, "ffn_up")) return Category::kFfnUp;
  if (contains(name, "ffn_gate")) return Category::kFfnGate;
  if (contains(name, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

bool is_attn_v_like(Category c) {
  return c == Category::kAttnV || c == Category::kAttnQkv || c == Category::kAttnKvB;
}

// tensor_allows_quantization: >= 2 dims, name ends in "weight", and not one of the small or
// precision-critical tensors llama.cpp keeps as stored.
bool allows_quantization(const TensorDesc& t) {
  if (t.shape.size() < 2) return false;
  const std::string& n = t.name;
  if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
  static const char* kKeep[] = {"_norm.weight",
                                "ffn_gate_inp.weight",
                                "ffn_gate_tid2eid.weight",
                                "altup",
                                "laurel",
                                "per_layer_model_proj",
                                "ssm_conv1d",
                                "shortconv.conv.weight",
                                "indexer.k_proj.weight",
                                "indexer.q_proj.weight",
                                "time_mix_first.weight",
                                "time_mix_w0.weight",
                                "time_mix_w1.weight",
                                "time_mix_w2.weight",
                                "time_mix_v0.weight",
                                "time_mix_v1.weight",
                                "time_mix_v2.weight",
                                "time_mix_a0.weight",
                                "time_mix_a1.weight",
                                "time_mix_a2.weight",
                                "time_mix_g1.weight",
                                "time_mix_g2.weight",
                                "time_mix_decay_w1.weight",
                                "time_mix_decay_w2.weight",
                                "time_mix_lerp_fused.weight",
                                "attn_rel_b.weight",
                                ".position_embd",
                                "sam.pos_embd",
                                "sam.neck.",
                                "sam.net_",
                                ".rel_pos",
                                ".patch_embd",
                                ".patch_merger",
                                "a.rvq.codebook",
                                "mm.a.code_embd"};
  for (const char* k : kKeep)
    if (contains(n, k)) return false;
  if (n == "position_embd.weight" || n == "token_types.weight") return false;
  return true;
}

int layer_of(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

// The very-low-bit file types whose own branch in llama_tensor_get_type_impl replaces the
// general attn_v / ffn_down / attn_output rules.
bool is_iq2_family(uint32_t ft) {
  return ft == IQ2_XXS || ft == IQ2_XS || ft == IQ1_S || ft == IQ2_S || ft == IQ2_M || ft == IQ1_M;
}
bool is_iq2_s_or_m(uint32_t ft) { return ft == IQ2_S || ft == IQ2_M; }

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

struct State {
  const ModelShape& model;
  uint32_t ftype;
  bool has_imatrix;
  std::optional<DType> output_type;
  bool tied_embeddings = true;
  int n_attention_wv = 0, i_attention_wv = 0;
  int i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  int n_gqa() const { return model.n_head_kv > 0 ? model.n_head / model.n_head_kv : 1; }
  bool falcon() const { return model.arch == "falcon"; }
  // LLM_TYPE_70B: an 80-layer llama with grouped-query attention.
  bool llama_70b() const {
    return model.arch == "llama" && model.n_layer == 80 && model.n_head != model.n_head_kv;
  }
};

// (i_layer, n_layer) of a per-layer tensor: counted for dense models, parsed for MoE ones.
std::pair<int, int> layer_info(const State& s, int counter, const std::string& name) {
  if (std::max(1, s.model.n_expert) > 1) {
    const int layer = layer_of(name);
    if (layer < 0 || layer >= s.model.n_layer)
      fail("tensor '{}': cannot determine its layer (block_count {})", name, s.model.n_layer);
    return {layer, s.model.n_layer};
  }
  return {counter, s.model.n_layer};
}

// llama_tensor_get_type_impl for the file types of kFileTypes.
DType mixture_type(State& s, DType t, const TensorDesc& tensor, Category cat) {
  const uint32_t ft = s.ftype;
  const std::string& name = tensor.name;
  if (cat == Category::kOutput || (s.tied_embeddings && cat == Category::kTokenEmbd)) {
    const int64_t nx = tensor.shape.back();
    if (s.output_type)
      t = *s.output_type;
    else if (ft == MXFP4_MOE || s.falcon() || nx % traits(t).block_elems != 0)
      t = DType::Q8_0;
    else if (is_iq2_family(ft) || ft == IQ3_XXS)
      t = DType::Q5_K;
    else if (t != DType::Q8_0)
      t = DType::Q6_K;
  } else if (ft == MXFP4_MOE) {
    // Expert tensors ([n_expert, rows, cols]) in MXFP4, everything else in Q8_0.
    t = tensor.shape.size() == 3 && tensor.shape[0] > 1 ? DType::MXFP4 : DType::Q8_0;
  } else if (cat == Category::kTokenEmbd) {
    if (ft == IQ2_XXS || ft == IQ2_XS || ft == IQ1_S || ft == IQ1_M)
      t = DType::Q2_K;
    else if (is_iq2_s_or_m(ft) || ft == IQ3_XXS)
      t = DType::IQ3_S;
    else if (ft == TQ1_0 || ft == TQ2_0)
      t = DType::Q4_K;
  } else if (is_iq2_family(ft)) {
    // 1.5-2.7 bpw: a few roles get more bits; the others keep the default type.
    const DType bump = is_iq2_s_or_m(ft) ? DType::IQ3_S : DType::Q2_K;
    if (is_attn_v_like(cat)) {
      t = s.n_gqa() >= 4 || s.model.n_expert >= 4 ? DType::Q4_K : bump;
      ++s.i_attention_wv;
    } else if (s.model.n_expert == 8 && cat == Category::kAttnK) {
      t = DType::Q4_K;
    } else if (cat == Category::kFfnDown) {
      if (s.i_ffn_down < s.model.n_layer / 8) t = bump;
      ++s.i_ffn_down;
    } else if (cat == Category::kAttnOutput) {
      if (s.model.n_expert == 8)
        t = DType::Q5_K;
      else if (ft == IQ1_S || ft == IQ1_M)
        t = DType::IQ2_XXS;
      else if (is_iq2_s_or_m(ft))
        t = DType::IQ3_S;
    }
  } else if (is_attn_v_like(cat)) {
    if (ft == Q2_K)
      t = s.n_gqa() >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (ft == Q2_K_S && s.n_gqa() >= 4)
      t = DType::Q4_K;
    else if (ft == IQ3_XXS)
      t = s.n_gqa() >= 4 ? DType::Q4_K : !s.has_imatrix ? DType::IQ3_S : DType::IQ3_XXS;
    else if ((ft == IQ3_XS || ft == IQ3_S) && s.n_gqa() >= 4)
      t = DType::Q4_K;
    else if (ft == IQ3_M)
      t = DType::Q4_K;
    else if (ft == Q3_K_M)
      t = s.i_attention_wv < 2 ? DType::Q5_K : DType::Q4_K;
    else if (ft == Q3_K_L)
      t = DType::Q5_K;
    else if ((ft == IQ4_NL || ft == IQ4_XS) && s.n_gqa() >= 4)
      t = DType::Q5_K;
    else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(s.i_attention_wv, s.n_attention_wv))
      t = DType::Q6_K;
    else if (ft == Q4_K_S && s.i_attention_wv < 4)
      t = DType::Q5_K;
    if (s.llama_70b() && (t == DType::Q3_K || t == DType::Q4_K)) t = DType::Q5_K;
    if (s.model.n_expert == 8) t = DType::Q8_0;
    ++s.i_attention_wv;
  } else if (cat == Category::kAttnK) {
    if (s.model.n_expert == 8)
      t = DType::Q8_0;
    else if (ft == IQ3_XS)
      t = DType::IQ3_XXS;
    else if (ft == IQ3_XXS)
      t = DType::IQ2_S;
  } else if (cat == Category::kAttnQ) {
    if (ft == IQ3_XS)
      t = DType::IQ3_XXS;
    else if (ft == IQ3_XXS)
      t = DType::IQ2_S;
  } else if (cat == Category::kFfnDown) {
    auto [i_layer, n_layer] = layer_info(s, s.i_ffn_down, name);
    if (ft == Q2_K) {
      t = DType::Q3_K;
    } else if (ft == Q2_K_S) {
      if (i_layer < n_layer / 8) t = DType::Q4_K;
    } else if (ft == IQ3_XXS && !s.has_imatrix) {
      t = i_layer < n_layer / 8 ? DType::Q4_K : DType::Q3_K;
    } else if (ft == Q3_K_M) {
      t = i_layer < n_layer / 16                           ? DType::Q5_K
          : !s.falcon() || use_more_bits(i_layer, n_layer) ? DType::Q4_K
                                                           : DType::Q3_K;
    } else if (ft == IQ3_M && (i_layer < n_layer / 8 ||
                               (s.model.n_expert == 8 && use_more_bits(i_layer, n_layer)))) {
      t = DType::Q4_K;
    } else if (ft == Q3_K_L) {
      t = s.falcon() ? DType::Q4_K : DType::Q5_K;
    } else if (ft == Q4_K_M) {
      if (s.falcon())
        t = i_layer < n_layer / 16            ? DType::Q6_K
            : use_more_bits(i_layer, n_layer) ? DType::Q5_K
                                              : DType::Q4_K;
      else if (use_more_bits(i_layer, n_layer))
        t = DType::Q6_K;
    } else if (i_layer < n_layer / 8 && (ft == IQ4_NL || ft == IQ4_XS) && !s.has_imatrix) {
      t = DType::Q5_K;
    } else if (ft == Q5_K_M && use_more_bits(i_layer, n_layer)) {
      t = DType::Q6_K;
    } else if (ft == Q4_K_S && !s.falcon() && i_layer < n_layer / 8) {
      t = DType::Q5_K;
    } else if ((ft == Q4_0 || ft == Q5_0) && s.has_imatrix && i_layer < n_layer / 8) {
      t = ft == Q4_0 ? DType::Q4_1 : DType::Q5_1;
    }
    ++s.i_ffn_down;
  } else if (cat == Category::kAttnOutput) {
    if (!s.falcon()) {
      if (s.model.n_expert == 8) {
        if (ft == Q2_K || ft == IQ3_XS || ft == IQ3_XXS || ft == Q3_K_S || ft == Q3_K_M ||
            ft == IQ4_NL || ft == Q4_K_S || ft == Q4_K_M || ft == IQ3_S || ft == IQ3_M ||
            ft == IQ4_XS)
          t = DType::Q5_K;
      } else {
        if (ft == Q2_K)
          t = DType::Q3_K;
        else if (ft == IQ3_XXS)
          t = DType::IQ3_S;
        else if (ft == Q3_K_M)
          t = DType::Q4_K;
        else if (ft == Q3_K_L)
          t = DType::Q5_K;
        else if (ft == IQ3_M)
          t = DType::Q4_K;
      }
    } else if (ft == Q3_K_L) {
      t = DType::Q4_K;
    }
  } else if (cat == Category::kAttnQkv) {
    // Unreachable (attn_qkv is attn_v-like above), as in llama.cpp.
  } else if (cat == Category::kFfnGate || cat == Category::kFfnUp) {
    int& counter = cat == Category::kFfnGate ? s.i_ffn_gate : s.i_ffn_up;
    auto [i_layer, n_layer] = layer_info(s, counter, name);
    if (ft == IQ3_XS && i_layer >= n_layer / 8 && i_layer < 7 * n_layer / 8) t = DType::IQ3_XXS;
    ++counter;
  }
  return t;
}

// tensor_type_fallback: a type whose block does not divide the row length.
DType fallback_type(const TensorDesc& tensor, DType t, std::string* note) {
  const int64_t ncols = tensor.shape.back();
  if (ncols % traits(t).block_elems == 0) return t;
  DType r = t;
  switch (t) {
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ4_XS:
      r = DType::IQ4_NL;
      break;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::TQ1_0:
    case DType::TQ2_0:
      r = DType::Q4_0;
      break;
    case DType::Q4_K:
      r = DType::Q5_0;
      break;
    case DType::Q5_K:
      r = DType::Q5_1;
      break;
    case DType::Q6_K:
      r = DType::Q8_0;
      break;
    default:
      break;  // a 32-element type: only F16 is left
  }
  if (ncols % traits(r).block_elems != 0) r = DType::F16;
  *note = fmt::format("row length {} is not a multiple of {}'s block of {}: using {}", ncols,
                      name(t), traits(t).block_elems, name(r));
  return r;
}

}  // namespace

std::optional<GgufFileType> find_gguf_file_type(std::string_view want) {
  for (const GgufFileType& f : kFileTypes) {
    if (f.name.size() != want.size()) continue;
    bool same = true;
    for (size_t i = 0; i < want.size() && same; ++i)
      same = std::toupper(static_cast<unsigned char>(want[i])) == f.name[i];
    if (same) return f;
  }
  return std::nullopt;
}

std::string gguf_file_type_list() {
  std::string s;
  for (const GgufFileType& f : kFileTypes) s += (s.empty() ? "" : ", ") + std::string(f.name);
  return s;
}

bool tensor_requires_imatrix(std::string_view tensor_name, DType to, const GgufFileType& ftype) {
  if (tensor_name == "token_embd.weight" || tensor_name == "per_layer_token_embd.weight" ||
      tensor_name == "output.weight")
    return false;
  switch (to) {
    case DType::IQ3_XXS:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ1_M:
    case DType::IQ1_S:
      return true;
    case DType::Q2_K:  // only the Q2_K tensors of a Q2_K_S file
      return ftype.llama_ftype == Q2_K_S;
    default:
      return false;
  }
}

std::vector<size_t> llama_quantize_order(const std::vector<TensorDesc>& tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    if (la != lb) return la < lb;
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

std::vector<TensorChoice> choose_tensor_types(const std::vector<TensorDesc>& tensors,
                                              const ModelShape& model, const GgufFileType& ftype,
                                              bool has_imatrix, bool pure,
                                              const TypeOverrides& overrides) {
  State s{model, ftype.llama_ftype, has_imatrix, overrides.output};
  for (const TensorDesc& t : tensors) {
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++s.n_attention_wv;
    if (c == Category::kOutput) s.tied_embeddings = false;
  }
  const bool quantized_default = traits(ftype.default_type).block_elems > 1;
  std::vector<TensorChoice> out(tensors.size());
  for (size_t i : llama_quantize_order(tensors)) {
    const TensorDesc& t = tensors[i];
    TensorChoice& c = out[i];
    c.quantizable = allows_quantization(t);
    if (!c.quantizable) {
      c.type = t.dtype;
      continue;
    }
    const Category cat = category_of(t.name);
    if (overrides.token_embd && cat == Category::kTokenEmbd) {
      c.type = *overrides.token_embd;
      continue;
    }
    if (overrides.output && cat == Category::kOutput) {
      c.type = *overrides.output;
      continue;
    }
    c.type = ftype.default_type;
    if (quantized_default) {
      if (!pure) c.type = mixture_type(s, c.type, t, cat);
      c.type = fallback_type(t, c.type, &c.note);
    }
  }
  return out;
}

}  // namespace lowbit::io
