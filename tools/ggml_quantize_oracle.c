// Quantizes fp32 rows with llama.cpp's own ggml_quantize_chunk (the function llama-quantize
// calls), for tools/gen_gguf_quantize_fixtures.py, which builds and runs it:
//   ggml_quantize_oracle TYPE_ID NROWS N_PER_ROW IN.f32 OUT.bin [IMATRIX.f32]
// Linked against the libggml-base.a of tools/build-llama-cpp.sh's build.
#include <stdio.h>
#include <stdlib.h>

#include "ggml.h"

static void* read_file(const char* path, size_t want) {
  FILE* f = fopen(path, "rb");
  if (!f) { perror(path); exit(1); }
  void* p = malloc(want);
  if (fread(p, 1, want, f) != want) { fprintf(stderr, "%s: short read\n", path); exit(1); }
  fclose(f);
  return p;
}

int main(int argc, char** argv) {
  if (argc < 6) { fprintf(stderr, "usage: TYPE NROWS N_PER_ROW IN OUT [IMATRIX]\n"); return 2; }
  const enum ggml_type type = (enum ggml_type)atoi(argv[1]);
  const int64_t nrows = atoll(argv[2]), n_per_row = atoll(argv[3]);
  const float* src = read_file(argv[4], (size_t)(nrows * n_per_row) * sizeof(float));
  const float* imatrix = argc > 6 ? read_file(argv[6], (size_t)n_per_row * sizeof(float)) : NULL;
  const size_t bytes = (size_t)nrows * ggml_row_size(type, n_per_row);
  void* dst = calloc(1, bytes);
  ggml_quantize_init(type);
  const size_t got = ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, imatrix);
  if (got != bytes) { fprintf(stderr, "size %zu != %zu\n", got, bytes); return 1; }
  FILE* f = fopen(argv[5], "wb");
  fwrite(dst, 1, bytes, f);
  fclose(f);
  return 0;
}
