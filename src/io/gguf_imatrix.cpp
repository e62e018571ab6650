// imatrix GGUF reader / writer (format in gguf_imatrix.h).
#include "io/gguf_imatrix.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace lowbit::io {
namespace {

bool strip_suffix(std::string& s, const std::string& suffix) {
  if (s.size() <= suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  s.resize(s.size() - suffix.size());
  return true;
}

std::vector<float> f32_values(const std::string& path, const TensorView& t) {
  if (t.dtype != DType::F32)
    fail("{}: tensor '{}': type {}, expected F32", path, t.name, name(t.dtype));
  std::vector<float> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || v[i] < 0)
      fail("{}: tensor '{}': element {} is {}, expected a finite value >= 0", path, t.name, i,
           v[i]);
  return v;
}

}  // namespace

std::vector<float> Imatrix::importance(const std::string& weight) const {
  auto it = entries.find(weight);
  if (it == entries.end()) return {};
  const ImatrixEntry& e = it->second;
  const int64_t n_in = e.n_in();
  std::vector<float> out(e.in_sum2.size());
  for (int64_t m = 0; m < e.n_mat; ++m) {
    const float count = float(std::lround(e.counts[size_t(m)]));
    for (int64_t j = 0; j < n_in; ++j)
      out[size_t(m * n_in + j)] = count > 0.0f ? e.in_sum2[size_t(m * n_in + j)] / count : 1.0f;
  }
  return out;
}

Imatrix read_imatrix(const std::string& path) {
  auto f = GgufFile::open(path);
  Imatrix m;
  if (f->has("imatrix.datasets")) m.datasets = f->get_string_array("imatrix.datasets");
  m.chunk_count = uint32_t(f->get_int_or("imatrix.chunk_count", 0));
  m.chunk_size = uint32_t(f->get_int_or("imatrix.chunk_size", 0));
  std::map<std::string, std::pair<const TensorView*, const TensorView*>> halves;
  for (const TensorView& t : f->tensors()) {
    std::string base = t.name;
    if (strip_suffix(base, ".in_sum2"))
      halves[base].first = &t;
    else if (strip_suffix(base, ".counts"))
      halves[base].second = &t;
  }
  if (halves.empty())
    fail(
        "{}: no NAME.in_sum2 / NAME.counts tensors; not an imatrix GGUF (convert a legacy .dat "
        "file with llama-imatrix --in-file)",
        path);
  for (const auto& [base, pair] : halves) {
    const auto [sums, counts] = pair;
    if (!sums || !counts)
      fail("{}: '{}' has {} but no {}", path, base, sums ? "in_sum2" : "counts",
           sums ? "counts" : "in_sum2");
    ImatrixEntry e;
    e.in_sum2 = f32_values(path, *sums);
    e.counts = f32_values(path, *counts);
    e.n_mat = int64_t(e.counts.size());
    if (e.n_mat < 1 || int64_t(e.in_sum2.size()) % e.n_mat != 0)
      fail("{}: '{}': {} sums do not split into {} matrices (counts)", path, base, e.in_sum2.size(),
           e.n_mat);
    m.entries.emplace(base, std::move(e));
  }
  return m;
}

void write_imatrix(const Imatrix& m, const std::string& path) {
  GgufWriter w;
  w.set_string("general.type", "imatrix");
  w.set_string_array("imatrix.datasets", m.datasets);
  w.set_u32("imatrix.chunk_count", m.chunk_count);
  w.set_u32("imatrix.chunk_size", m.chunk_size);
  auto bytes_of = [](const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  for (const auto& [name, e] : m.entries) {
    if (e.n_mat < 1 || int64_t(e.counts.size()) != e.n_mat ||
        int64_t(e.in_sum2.size()) % e.n_mat != 0 || e.in_sum2.empty())
      fail("{}: imatrix entry '{}' is inconsistent ({} sums, {} counts)", path, name,
           e.in_sum2.size(), e.counts.size());
    w.add_tensor(name + ".in_sum2", DType::F32, {e.n_mat, e.n_in()}, bytes_of(e.in_sum2));
    w.add_tensor(name + ".counts", DType::F32, {e.n_mat, 1}, bytes_of(e.counts));
  }
  w.write(path);
}

}  // namespace lowbit::io
