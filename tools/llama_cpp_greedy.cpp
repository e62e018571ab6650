// llama_cpp_greedy: greedy decoding with llama.cpp's C API, printing exact token ids and logits as
// one JSON object. Used by tools/llama_cpp_reference.py to make the greedy-generation reference
// (tests/fixtures/llama_cpp/reference.json) that lowbit's engine is checked against.
//
// Build (done by tools/llama_cpp_reference.py against the tools/build-llama-cpp.sh build tree):
//   g++ -O2 -std=c++17 tools/llama_cpp_greedy.cpp -I$SRC/include -I$SRC/ggml/include \
//       $BUILD/src/libllama.a $BUILD/ggml/src/libggml.a $BUILD/ggml/src/libggml-cpu.a \
//       $BUILD/ggml/src/libggml-base.a -fopenmp -lpthread -ldl -o llama_cpp_greedy
// Usage: llama_cpp_greedy MODEL.gguf N_PREDICT N_THREADS [N_CTX]
//   Starts from [BOS] only, appends argmax(logits) N_PREDICT times (stops early at an
//   end-of-generation token, which is then included). Output fields:
//   bos, tokens (generated ids), stopped_at_eog, text (detokenized pieces), steps (per step: id,
//   its logit, margin to the runner-up), step0_logits (all logits after BOS when n_vocab <= 4096).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

namespace {

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void NoLog(ggml_log_level, const char*, void*) {}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf N_PREDICT N_THREADS [N_CTX]\n", argv[0]);
    return 2;
  }
  const int n_predict = std::atoi(argv[2]);
  const int n_threads = std::atoi(argv[3]);
  const int n_ctx = argc > 4 ? std::atoi(argv[4]) : n_predict + 8;
  if (n_predict <= 0 || n_threads <= 0 || n_ctx < n_predict + 1) {
    std::fprintf(stderr, "bad N_PREDICT/N_THREADS/N_CTX\n");
    return 2;
  }
  llama_log_set(NoLog, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = n_ctx;
  cp.n_batch = n_ctx;
  cp.n_threads = n_threads;
  cp.n_threads_batch = n_threads;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "cannot create context\n");
    return 1;
  }

  llama_token tok = llama_vocab_bos(vocab);
  const llama_token bos = tok;
  std::vector<llama_token> out;
  std::vector<float> step0;
  std::string steps, text;
  bool eog = false;
  for (int i = 0; i < n_predict; ++i) {
    llama_batch batch = llama_batch_get_one(&tok, 1);
    if (llama_decode(ctx, batch) != 0) {
      std::fprintf(stderr, "llama_decode failed at step %d\n", i);
      return 1;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    if (i == 0 && n_vocab <= 4096) step0.assign(logits, logits + n_vocab);
    int best = 0, second = -1;
    for (int v = 1; v < n_vocab; ++v) {
      if (logits[v] > logits[best]) {
        second = best;
        best = v;
      } else if (second < 0 || logits[v] > logits[second]) {
        second = v;
      }
    }
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%s{\"id\":%d,\"logit\":%.6g,\"margin\":%.6g}", i ? "," : "",
                  best, logits[best], logits[best] - logits[second]);
    steps += buf;
    tok = best;
    out.push_back(tok);
    char piece[256];
    int n = llama_token_to_piece(vocab, tok, piece, sizeof(piece), 0, true);
    if (n > 0) text.append(piece, n);
    if (llama_vocab_is_eog(vocab, tok)) {
      eog = true;
      break;
    }
  }

  std::printf("{\"bos\":%d,\"n_vocab\":%d,\"tokens\":[", bos, n_vocab);
  for (size_t i = 0; i < out.size(); ++i) std::printf("%s%d", i ? "," : "", out[i]);
  std::printf("],\"stopped_at_eog\":%s,\"text\":\"%s\",\"steps\":[%s]", eog ? "true" : "false",
              JsonEscape(text).c_str(), steps.c_str());
  if (!step0.empty()) {
    std::printf(",\"step0_logits\":[");
    for (size_t i = 0; i < step0.size(); ++i) std::printf("%s%.7g", i ? "," : "", step0[i]);
    std::printf("]");
  }
  std::printf("}\n");
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
