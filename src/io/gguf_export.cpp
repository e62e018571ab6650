// GGUF requantization driver (see gguf_export.h).
#include "io/gguf_export.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/gguf_writer.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/gguf_quantize.h"

namespace lowbit::io {
namespace {

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

GgufFileType file_type_or_fail(const std::string& name) {
  auto ft = find_gguf_file_type(name);
  if (!ft)
    fail("unknown or unsupported GGUF file type '{}'; lowbit can write {}", name,
         gguf_file_type_list());
  return *ft;
}

// The tensor's values as fp32 (numel floats).
std::vector<float> decode(const GgufFile& in, const TensorView& t) {
  if (auto f = float_values(t)) return std::move(*f);
  if (!kernels::cpu::cpu_kernel_supports(t.dtype))
    fail("{}: tensor '{}': cannot decode type {} to requantize it", in.path(), t.name,
         name(t.dtype));
  std::vector<float> out(size_t(t.numel()));
  kernels::cpu::dequantize_ref(t.dtype, t.data, t.numel(), out.data());
  return out;
}

}  // namespace

ModelShape model_shape_of(const GgufFile& in) {
  ModelShape m;
  m.arch = in.get_string_or("general.architecture", "");
  const std::string p = m.arch + ".";
  m.n_layer = int(in.get_int_or(p + "block_count", 0));
  m.n_head = int(in.get_int_or(p + "attention.head_count", 0));
  m.n_head_kv = int(in.get_int_or(p + "attention.head_count_kv", m.n_head));
  m.n_expert = int(in.get_int_or(p + "expert_count", 0));
  return m;
}

GgufExportResult plan_gguf_export(const GgufFile& in, const GgufExportOptions& opts) {
  const GgufFileType ft = file_type_or_fail(opts.file_type);
  std::vector<TensorDesc> descs;
  for (const TensorView& t : in.tensors()) descs.push_back({t.name, t.shape, t.dtype});
  const auto choices = choose_tensor_types(descs, model_shape_of(in), ft, opts.imatrix != nullptr,
                                           opts.pure, opts.overrides);
  GgufExportResult r;
  for (size_t i : llama_quantize_order(descs)) {
    const TensorView& t = in.tensors()[i];
    const TensorChoice& c = choices[i];
    ExportedTensor e{t.name, t.shape, t.dtype, c.type, c.type == t.dtype, false, c.note};
    if (!e.copied && opts.imatrix) {
      const auto im = opts.imatrix->importance(t.name);
      if (!im.empty()) {
        const int64_t n_per_row = t.shape.back();
        const int64_t n_mat =
            t.shape.size() >= 3 ? t.numel() / (n_per_row * t.shape[t.shape.size() - 2]) : 1;
        if (int64_t(im.size()) != n_per_row * n_mat)
          fail("imatrix entry for '{}' has {} values, expected {} ({} matrices of rows of {})",
               t.name, im.size(), n_per_row * n_mat, n_mat, n_per_row);
        e.used_imatrix = true;
      }
    }
    if (!e.copied && !e.used_imatrix && tensor_requires_imatrix(t.name, e.to, ft))
      fail(
          "file type {} needs an importance matrix for '{}' ({}): make one with `lowbit "
          "imatrix` and pass --imatrix",
          ft.name, t.name, name(e.to));
    if (!e.copied && int64_t(t.shape.back()) % traits(e.to).block_elems != 0)
      fail("tensor '{}': rows of {} cannot be stored as {} (blocks of {})", t.name, t.shape.back(),
           name(e.to), traits(e.to).block_elems);
    if (!e.copied && !kernels::cpu::gguf_quantize_supports(e.to))
      fail("tensor '{}': lowbit cannot write type {} (needed for file type {})", t.name, name(e.to),
           ft.name);
    r.bytes_in += t.nbytes;
    r.bytes_out += *dtype_bytes(e.to, uint64_t(t.numel()));
    r.tensors.push_back(std::move(e));
  }
  return r;
}

GgufExportResult export_gguf(const GgufFile& in, const std::string& out_path,
                             const GgufExportOptions& opts) {
  const GgufFileType ft = file_type_or_fail(opts.file_type);
  GgufExportResult plan = plan_gguf_export(in, opts);
  GgufWriter w;
  w.copy_metadata(in);
  w.set_u32("general.quantization_version", kQuantizationVersion);
  w.set_u32("general.file_type", ft.llama_ftype);
  for (const ExportedTensor& e : plan.tensors) {
    const TensorView* t = in.find_tensor(e.name);
    LOWBIT_CHECK(t != nullptr, "tensor {} vanished", e.name);
    if (e.copied) {
      w.add_tensor(e.name, e.to, e.shape,
                   [t] { return std::vector<uint8_t>(t->data, t->data + t->nbytes); });
      continue;
    }
    const bool use_imatrix = e.used_imatrix;
    const DType to = e.to;
    w.add_tensor(e.name, to, e.shape, [&in, t, to, use_imatrix, &opts] {
      const std::vector<float> x = decode(in, *t);
      for (size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x[i]))
          fail("{}: tensor '{}': element {} is {}; refusing to quantize non-finite weights",
               in.path(), t->name, i, x[i]);
      const int64_t n_per_row = t->shape.back();
      const int64_t rows = t->numel() / n_per_row;
      std::vector<float> im;
      if (use_imatrix) im = opts.imatrix->importance(t->name);
      // One imatrix slice per matrix of a 3-D (expert) tensor.
      const int64_t n_mat = im.empty() ? 1 : int64_t(im.size()) / n_per_row;
      const int64_t rows_per_mat = rows / n_mat;
      const uint64_t row_bytes = *dtype_bytes(to, uint64_t(n_per_row));
      std::vector<uint8_t> out(size_t(uint64_t(rows) * row_bytes));
      for (int64_t m = 0; m < n_mat; ++m)
        kernels::cpu::quantize_rows(to, x.data() + m * rows_per_mat * n_per_row, rows_per_mat,
                                    n_per_row, im.empty() ? nullptr : im.data() + m * n_per_row,
                                    out.data() + uint64_t(m * rows_per_mat) * row_bytes);
      return out;
    });
  }
  w.write(out_path);
  return plan;
}

}  // namespace lowbit::io
