// GGUF -> GGUF requantization, what `lowbit quantize` runs for a GGUF input: every tensor is
// decoded to fp32 (F32/F16/BF16 and every GGUF block type lowbit reads) and re-encoded with
// kernels/cpu/gguf_quantize.h into the type io/gguf_type_rules.h picks for the file type; the
// tensors the rules keep (norms, 1-D tensors, ...) are copied byte for byte. Metadata is copied
// (split.* and general.alignment dropped) with general.file_type and
// general.quantization_version (2) set, as llama-quantize does. The output is written through
// GgufWriter (temp file + rename), one tensor in memory at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "io/gguf.h"
#include "io/gguf_imatrix.h"
#include "io/gguf_type_rules.h"

namespace lowbit::io {

struct GgufExportOptions {
  std::string file_type = "Q4_K_M";  // a name of gguf_file_type_list()
  bool pure = false;                 // no mixture: every quantizable tensor gets the default type
  const Imatrix* imatrix = nullptr;  // importance weights (optional)
  TypeOverrides overrides;           // --output-tensor-type / --token-embedding-type
};

struct ExportedTensor {
  std::string name;
  std::vector<int64_t> shape;
  DType from, to;
  bool copied;  // stored bytes copied unchanged
  bool used_imatrix;
  std::string note;  // fallback taken, if any
};

struct GgufExportResult {
  std::vector<ExportedTensor> tensors;   // in output order
  uint64_t bytes_in = 0, bytes_out = 0;  // tensor data only
};

// Plans the per-tensor types of `in` for `opts` without writing anything (also validates:
// unknown file type, a required imatrix missing, an imatrix entry of the wrong size).
GgufExportResult plan_gguf_export(const GgufFile& in, const GgufExportOptions& opts);

// Plans and writes `out_path`. Throws lowbit::Error naming the tensor on non-finite weights or
// a type lowbit cannot decode; `out_path` is untouched on any failure.
GgufExportResult export_gguf(const GgufFile& in, const std::string& out_path,
                             const GgufExportOptions& opts);

// The model facts the type rules need, from <arch>.block_count etc.
ModelShape model_shape_of(const GgufFile& in);

}  // namespace lowbit::io
