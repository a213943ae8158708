// Fused multi-resolution hash-grid lookup for the CPU: index math, gather and trilinear interpolation in one
// pass per sample (forward), and the scatter of the gradients into the table (backward).
//
// It computes exactly what nid_nerf/fields/encoding.py's corner_lookup + interpolate compute with torch ops, in
// the same float32 arithmetic for the indices (so the corners are the same), without materialising the
// [N, L, 8] indices, the [N, L, K, 8] weights or the [N, L, 8, F] gathered features (about 15 kB a sample as
// torch moves them, docs/cpu_limits.md). The position gradient is not implemented: the caller uses the torch path
// when the positions require a gradient.
//
// Layout (as in encoding.py): the table is flat [U * L * S, F]; level l of slot u occupies rows
// [(u * L + l) * S, (u * L + l + 1) * S). Corner c = 4 * ix + 2 * iy + iz. Outputs z [N, L * F] and, with
// with_grad, dz [3, N, L * F] (d z / d x01 along x, y, z).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

// The index math must round as torch's float32 ops do (the same corners): no fused multiply-adds here, whatever
// the build flags allow (fused_softplus.cpp, built with the same flags, may use them).
#pragma GCC optimize("fp-contract=off")

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;

struct Corners {
  int64_t row[8];
  float w[8];       // corner weights
  float d[3][8];    // their derivatives along x, y, z (filled only when asked)
};

// The eight corners of x's cell at one level: flat table rows and weights. Mirrors corner_lookup.
inline void level_corners(const float* x, float res, bool dense, int64_t row0, uint32_t mask, bool with_grad,
                          Corners& out) {
  float frac[3];
  uint32_t cell[3];
  for (int a = 0; a < 3; ++a) {
    float v = std::fmin(std::fmax(x[a], 0.0f), 1.0f);
    float pos = v * res;
    float base = std::fmin(std::floor(pos), res - 1.0f);
    frac[a] = pos - base;
    cell[a] = static_cast<uint32_t>(static_cast<int32_t>(base));
  }
  const uint32_t side = static_cast<uint32_t>(res) + 1u;
  uint32_t tx[2], ty[2], tz[2];
  for (int i = 0; i < 2; ++i) {
    if (dense) {
      tx[i] = cell[0] + i;
      ty[i] = (cell[1] + i) * side;
      tz[i] = (cell[2] + i) * side * side;
    } else {
      tx[i] = cell[0] + i;
      ty[i] = (cell[1] + i) * kPrimeY;
      tz[i] = (cell[2] + i) * kPrimeZ;
    }
  }
  const float wx[2] = {1.0f - frac[0], frac[0]};
  const float wy[2] = {1.0f - frac[1], frac[1]};
  const float wz[2] = {1.0f - frac[2], frac[2]};
  const float s[2] = {-res, res};
  for (int ix = 0; ix < 2; ++ix) {
    for (int iy = 0; iy < 2; ++iy) {
      for (int iz = 0; iz < 2; ++iz) {
        const int c = 4 * ix + 2 * iy + iz;
        const uint32_t index = dense ? tx[ix] + ty[iy] + tz[iz] : (tx[ix] ^ ty[iy] ^ tz[iz]) & mask;
        out.row[c] = row0 + static_cast<int64_t>(index);
        const float wyz = wy[iy] * wz[iz];
        out.w[c] = wx[ix] * wyz;
        if (with_grad) {
          out.d[0][c] = s[ix] * wyz;
          out.d[1][c] = wx[ix] * s[iy] * wz[iz];
          out.d[2][c] = wx[ix] * wy[iy] * s[iz];
        }
      }
    }
  }
}

struct Spec {
  std::vector<float> res;
  std::vector<bool> dense;
  int64_t levels;
  int64_t size;  // entries per level (a power of two)
};

Spec make_spec(c10::IntArrayRef resolutions, int64_t num_dense, int64_t table_size) {
  TORCH_CHECK(table_size > 0 && (table_size & (table_size - 1)) == 0, "table_size must be a power of two");
  Spec spec;
  spec.levels = static_cast<int64_t>(resolutions.size());
  spec.size = table_size;
  for (int64_t l = 0; l < spec.levels; ++l) {
    spec.res.push_back(static_cast<float>(resolutions[l]));
    spec.dense.push_back(l < num_dense);
  }
  return spec;
}

void check_inputs(const at::Tensor& x, const c10::optional<at::Tensor>& slots) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 2 && x.size(1) == 3,
              "x must be a float32 CPU tensor [N, 3]");
  if (slots.has_value()) {
    TORCH_CHECK(slots->scalar_type() == at::kLong && slots->numel() == x.size(0), "slots must be int64 [N]");
  }
}

std::vector<at::Tensor> lookup_forward(const at::Tensor& table_in, const at::Tensor& x_in,
                                       const c10::optional<at::Tensor>& slots_in, c10::IntArrayRef resolutions,
                                       int64_t num_dense, int64_t table_size, bool with_grad) {
  check_inputs(x_in, slots_in);
  TORCH_CHECK(table_in.device().is_cpu() && table_in.scalar_type() == at::kFloat && table_in.dim() == 2,
              "table must be a float32 CPU tensor [U * L * S, F]");
  const Spec spec = make_spec(resolutions, num_dense, table_size);
  const at::Tensor table = table_in.contiguous();
  const at::Tensor x = x_in.contiguous();
  const at::Tensor slots = slots_in.has_value() ? slots_in->contiguous() : at::Tensor();
  const int64_t n = x.size(0), L = spec.levels, S = spec.size, F = table.size(1);
  TORCH_CHECK(table.size(0) % (L * S) == 0, "table rows must be a multiple of levels * table_size");
  if (slots.defined() && n > 0) {
    const int64_t top = slots.max().item<int64_t>();
    TORCH_CHECK(slots.min().item<int64_t>() >= 0 && top < table.size(0) / (L * S), "slot ", top,
                " out of range for a table of ", table.size(0) / (L * S), " scenes");
  }
  at::Tensor z = at::empty({n, L * F}, x.options());
  at::Tensor dz = with_grad ? at::empty({3, n, L * F}, x.options()) : at::empty({0}, x.options());
  const float* tp = table.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const int64_t* sp = slots.defined() ? slots.data_ptr<int64_t>() : nullptr;
  float* zp = z.data_ptr<float>();
  float* dzp = with_grad ? dz.data_ptr<float>() : nullptr;
  const int64_t plane = n * L * F;
  const uint32_t mask = static_cast<uint32_t>(S - 1);
  at::parallel_for(0, n, 256, [&](int64_t begin, int64_t end) {
    Corners cs;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t slot = sp ? sp[i] : 0;
      for (int64_t l = 0; l < L; ++l) {
        level_corners(xp + 3 * i, spec.res[l], spec.dense[l], (slot * L + l) * S, mask, with_grad, cs);
        float* zo = zp + i * L * F + l * F;
        for (int64_t f = 0; f < F; ++f) zo[f] = 0.0f;
        if (with_grad) {
          for (int k = 0; k < 3; ++k)
            for (int64_t f = 0; f < F; ++f) dzp[k * plane + i * L * F + l * F + f] = 0.0f;
        }
        for (int c = 0; c < 8; ++c) {
          const float* e = tp + cs.row[c] * F;
          for (int64_t f = 0; f < F; ++f) zo[f] += cs.w[c] * e[f];
          if (with_grad) {
            for (int k = 0; k < 3; ++k) {
              float* o = dzp + k * plane + i * L * F + l * F;
              for (int64_t f = 0; f < F; ++f) o[f] += cs.d[k][c] * e[f];
            }
          }
        }
      }
    }
  });
  return {z, dz};
}

// Gradient of the table: every sample adds w_c * dL/dz (+ sum_k d_kc * dL/ddz_k) to its corners' rows. Levels
// own disjoint rows, so threads split the levels and never write the same row.
at::Tensor lookup_backward(const at::Tensor& grad_z_in, const c10::optional<at::Tensor>& grad_dz_in,
                           const at::Tensor& x_in, const c10::optional<at::Tensor>& slots_in,
                           c10::IntArrayRef resolutions, int64_t num_dense, int64_t table_size, int64_t table_rows,
                           int64_t features) {
  check_inputs(x_in, slots_in);
  const Spec spec = make_spec(resolutions, num_dense, table_size);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor slots = slots_in.has_value() ? slots_in->contiguous() : at::Tensor();
  const at::Tensor gz = grad_z_in.contiguous();
  const bool with_grad = grad_dz_in.has_value() && grad_dz_in->defined() && grad_dz_in->numel() > 0;
  const at::Tensor gdz = with_grad ? grad_dz_in->contiguous() : at::Tensor();
  const int64_t n = x.size(0), L = spec.levels, S = spec.size, F = features;
  at::Tensor grad = at::zeros({table_rows, F}, gz.options());
  const float* xp = x.data_ptr<float>();
  const int64_t* sp = slots.defined() ? slots.data_ptr<int64_t>() : nullptr;
  const float* gzp = gz.data_ptr<float>();
  const float* gdzp = with_grad ? gdz.data_ptr<float>() : nullptr;
  float* gp = grad.data_ptr<float>();
  const int64_t plane = n * L * F;
  const uint32_t mask = static_cast<uint32_t>(S - 1);
  at::parallel_for(0, L, 1, [&](int64_t begin, int64_t end) {
    Corners cs;
    std::vector<float> g(F);
    for (int64_t l = begin; l < end; ++l) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = sp ? sp[i] : 0;
        level_corners(xp + 3 * i, spec.res[l], spec.dense[l], (slot * L + l) * S, mask, with_grad, cs);
        const float* go = gzp + i * L * F + l * F;
        for (int c = 0; c < 8; ++c) {
          float* row = gp + cs.row[c] * F;
          for (int64_t f = 0; f < F; ++f) {
            float v = cs.w[c] * go[f];
            if (with_grad) {
              for (int k = 0; k < 3; ++k) v += cs.d[k][c] * gdzp[k * plane + i * L * F + l * F + f];
            }
            row[f] += v;
          }
        }
      }
    }
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY(nid_fused, m) {
  m.def("lookup_forward(Tensor table, Tensor x, Tensor? slots, int[] resolutions, int num_dense, int table_size, "
        "bool with_grad) -> Tensor[]");
  m.def("lookup_backward(Tensor grad_z, Tensor? grad_dz, Tensor x, Tensor? slots, int[] resolutions, int num_dense, "
        "int table_size, int table_rows, int features) -> Tensor");
}

TORCH_LIBRARY_IMPL(nid_fused, CPU, m) {
  m.impl("lookup_forward", &lookup_forward);
  m.impl("lookup_backward", &lookup_backward);
}
