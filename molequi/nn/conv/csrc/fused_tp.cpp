// Fused "uvu" tensor product + scatter-sum for one input irrep block of molequi's EquivariantConv.
//   x    [N, D, U]  source features of the block, channels last
//   sh   [E, S]     edge spherical harmonics
//   cg   [S, Q, D]  Clebsch-Gordan coefficients with path weights and normalisation
//   w    [E, *]     radial weights; the block's are the P * U columns from `offset`, ordered (p, u)
//   path [Q]        int64: the path (0..P-1) of every output row q
//   src, tgt [E]    int64 source j and target i of every edge
// forward:  out[tgt, q, u] += w[e, path[q], u] * sum_i M_e[q, i] x[src, i, u],  M_e = sum_s sh[e, s] cg[s]
// backward: gradients of a scalar with respect to x, sh and w, given g = d/d(out).
// Everything accumulates into caller-provided tensors, so that edges can be processed in chunks and
// blocks can share the sh and w gradients.
//
// Threads: the edges of a call are split into `parts` ranges (at most one per thread). Where two
// ranges could scatter into the same row (targets not sorted; sources always), range c > 0
// accumulates into its own copy ws[c - 1] of the output, a caller-provided `workspace` [W, rows, *]
// zeroed once per pass and summed into the output by the caller after the last chunk (so no call
// allocates or zeroes anything of size N). W bounds the number of ranges (W = 0: one range).
// Callers check that src and tgt lie in [0, N) and that U <= kMaxU (`max_channels`).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kMaxU = 512;

template <typename T>
inline void path_map(const T* __restrict__ sh_e, const T* __restrict__ cg, int64_t S, int64_t QD, T* __restrict__ m) {
  for (int64_t k = 0; k < QD; ++k) m[k] = T(0);
  for (int64_t s = 0; s < S; ++s) {
    const T y = sh_e[s];
    if (y == T(0)) continue;
    const T* __restrict__ c = cg + s * QD;
    for (int64_t k = 0; k < QD; ++k) m[k] += y * c[k];
  }
}

// Edge ranges of the threads; with `sorted` targets, no target's edges are split (disjoint output rows).
std::vector<int64_t> edge_chunks(const int64_t* key, int64_t E, int64_t parts, bool sorted) {
  std::vector<int64_t> b(parts + 1);
  for (int64_t k = 0; k <= parts; ++k) b[k] = E * k / parts;
  if (sorted)
    for (int64_t k = 1; k < parts; ++k) {
      int64_t i = std::max(b[k], b[k - 1]);
      while (i > 0 && i < E && key[i] == key[i - 1]) ++i;
      b[k] = i;
    }
  return b;
}

int64_t num_parts(int64_t E) { return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), E / 256 + 1)); }

template <typename T, int64_t UC>
void forward_impl(const T* __restrict__ x, const T* __restrict__ sh, const T* __restrict__ cg, const T* __restrict__ w,
                  int64_t ldw, const int64_t* pidx, const int64_t* src, const int64_t* tgt, T* out, T* ws,
                  int64_t ws_parts, int64_t N, int64_t E, int64_t S, int64_t Q, int64_t D, int64_t U_, bool sorted) {
  const int64_t U = UC > 0 ? UC : U_;
  const int64_t parts = sorted ? num_parts(E) : std::min(num_parts(E), ws_parts + 1);
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, sorted);
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D);
    alignas(64) T acc[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* o = (sorted || c == 0) ? out : ws + (c - 1) * N * Q * U;
      for (int64_t e = b[c]; e < b[c + 1]; ++e) {
        path_map(sh + e * S, cg, S, Q * D, m.data());
        const T* __restrict__ xs = x + src[e] * D * U;
        const T* __restrict__ we = w + e * ldw;
        T* __restrict__ ot = o + tgt[e] * Q * U;
        for (int64_t q = 0; q < Q; ++q) {
          const T* mq = m.data() + q * D;
          const T* __restrict__ wp = we + pidx[q] * U;
          for (int64_t u = 0; u < U; ++u) acc[u] = mq[0] * xs[u];
          for (int64_t i = 1; i < D; ++i) {
            const T c_ = mq[i];
            const T* __restrict__ xi = xs + i * U;
            for (int64_t u = 0; u < U; ++u) acc[u] += c_ * xi[u];
          }
          T* __restrict__ oq = ot + q * U;
          for (int64_t u = 0; u < U; ++u) oq[u] += wp[u] * acc[u];
        }
      }
    }
  });
}

template <typename T, int64_t UC>
void backward_impl(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ sh, const T* __restrict__ cg,
                   const T* __restrict__ w, int64_t ldw, const int64_t* pidx, const int64_t* src, const int64_t* tgt,
                   T* gx, T* ws_gx, int64_t ws_parts, T* __restrict__ gsh, T* __restrict__ gw, int64_t ldgw,
                   int64_t N, int64_t E, int64_t S, int64_t Q, int64_t D, int64_t U_) {
  const int64_t U = UC > 0 ? UC : U_;
  const int64_t parts = std::min(num_parts(E), ws_parts + 1);  // gx is scattered by source: one copy per part
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, false);
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D), gm(Q * D);
    alignas(64) T acc[UC > 0 ? UC : kMaxU];
    alignas(64) T gwu[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* gxc = c == 0 ? gx : ws_gx + (c - 1) * N * D * U;
      for (int64_t e = b[c]; e < b[c + 1]; ++e) {
        path_map(sh + e * S, cg, S, Q * D, m.data());
        const T* __restrict__ xs = x + src[e] * D * U;
        const T* __restrict__ we = w + e * ldw;
        const T* __restrict__ gt = g + tgt[e] * Q * U;
        T* __restrict__ gxs = gxc + src[e] * D * U;
        T* __restrict__ gwe = gw + e * ldgw;
        for (int64_t q = 0; q < Q; ++q) {
          const T* mq = m.data() + q * D;
          const T* __restrict__ wp = we + pidx[q] * U;
          const T* __restrict__ gq = gt + q * U;
          T* __restrict__ gwp = gwe + pidx[q] * U;
          for (int64_t u = 0; u < U; ++u) acc[u] = mq[0] * xs[u];
          for (int64_t i = 1; i < D; ++i) {
            const T c_ = mq[i];
            const T* __restrict__ xi = xs + i * U;
            for (int64_t u = 0; u < U; ++u) acc[u] += c_ * xi[u];
          }
          for (int64_t u = 0; u < U; ++u) {
            gwp[u] += gq[u] * acc[u];
            gwu[u] = gq[u] * wp[u];
          }
          for (int64_t i = 0; i < D; ++i) {
            const T c_ = mq[i];
            const T* __restrict__ xi = xs + i * U;
            T* __restrict__ gxi = gxs + i * U;
            T sum = T(0);
#pragma omp simd reduction(+ : sum)
            for (int64_t u = 0; u < U; ++u) {
              gxi[u] += c_ * gwu[u];
              sum += gwu[u] * xi[u];
            }
            gm[q * D + i] = sum;
          }
        }
        T* __restrict__ gs = gsh + e * S;
        for (int64_t s = 0; s < S; ++s) {
          const T* __restrict__ c_ = cg + s * Q * D;
          T sum = T(0);
#pragma omp simd reduction(+ : sum)
          for (int64_t k = 0; k < Q * D; ++k) sum += c_[k] * gm[k];
          gs[s] += sum;
        }
      }
    }
  });
}

// Second derivatives: given the gradients ggx [N, D, U], ggsh [E, S], ggw [E, *] (block columns from
// offset) of a scalar L2 with respect to the first-derivative outputs gx, gsh, gw of fused_tp_backward,
// accumulate dL2/dg into dg [N, Q, U], dL2/dx into dx [N, D, U], dL2/dsh into dsh [E, S] and dL2/dw
// into dw [E, *]; also gw [E, *] += the first derivative with respect to w (needed by the radial MLP's
// second derivatives).
template <typename T, int64_t UC>
void double_backward_impl(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ sh,
                          const T* __restrict__ cg, const T* __restrict__ w, int64_t ldw, const int64_t* pidx,
                          const int64_t* src, const int64_t* tgt, const T* __restrict__ ggx,
                          const T* __restrict__ ggsh, const T* __restrict__ ggw, int64_t ldggw, T* dg, T* ws_dg,
                          int64_t ws_dg_parts, T* dx, T* ws_dx, int64_t ws_dx_parts, T* __restrict__ dsh,
                          T* __restrict__ dw, int64_t lddw, T* __restrict__ gw, int64_t ldgw, int64_t N, int64_t E,
                          int64_t S, int64_t Q, int64_t D, int64_t U_, bool sorted) {
  const int64_t U = UC > 0 ? UC : U_;
  int64_t parts = std::min(num_parts(E), ws_dx_parts + 1);
  if (!sorted) parts = std::min(parts, ws_dg_parts + 1);
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, sorted);
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D), ggm(Q * D), dm(Q * D);
    alignas(64) T t_[UC > 0 ? UC : kMaxU];
    alignas(64) T ab[UC > 0 ? UC : kMaxU];
    alignas(64) T cu[UC > 0 ? UC : kMaxU];
    alignas(64) T du[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* dgc = (sorted || c == 0) ? dg : ws_dg + (c - 1) * N * Q * U;
      T* dxc = c == 0 ? dx : ws_dx + (c - 1) * N * D * U;
      for (int64_t e = b[c]; e < b[c + 1]; ++e) {
        path_map(sh + e * S, cg, S, Q * D, m.data());
        path_map(ggsh + e * S, cg, S, Q * D, ggm.data());
        const T* __restrict__ xs = x + src[e] * D * U;
        const T* __restrict__ ggxs = ggx + src[e] * D * U;
        const T* __restrict__ we = w + e * ldw;
        const T* __restrict__ gge = ggw + e * ldggw;
        const T* __restrict__ gt = g + tgt[e] * Q * U;
        T* __restrict__ dgt = dgc + tgt[e] * Q * U;
        T* __restrict__ dxs = dxc + src[e] * D * U;
        T* __restrict__ dwe = dw + e * lddw;
        T* __restrict__ gwe = gw + e * ldgw;
        for (int64_t q = 0; q < Q; ++q) {
          const T* mq = m.data() + q * D;
          const T* gmq = ggm.data() + q * D;
          const int64_t p = pidx[q];
          const T* __restrict__ wp = we + p * U;
          const T* __restrict__ ggp = gge + p * U;
          const T* __restrict__ gq = gt + q * U;
          // t = M x, ab = M ggx + ggM x
          for (int64_t u = 0; u < U; ++u) {
            t_[u] = T(0);
            ab[u] = T(0);
          }
          for (int64_t i = 0; i < D; ++i) {
            const T mi = mq[i], gi = gmq[i];
            const T* __restrict__ xi = xs + i * U;
            const T* __restrict__ ggxi = ggxs + i * U;
            for (int64_t u = 0; u < U; ++u) {
              t_[u] += mi * xi[u];
              ab[u] += mi * ggxi[u] + gi * xi[u];
            }
          }
          T* __restrict__ dgq = dgt + q * U;
          T* __restrict__ dwp = dwe + p * U;
          T* __restrict__ gwp = gwe + p * U;
          for (int64_t u = 0; u < U; ++u) {
            dgq[u] += wp[u] * ab[u] + ggp[u] * t_[u];
            dwp[u] += gq[u] * ab[u];
            gwp[u] += gq[u] * t_[u];
            cu[u] = gq[u] * wp[u];
            du[u] = gq[u] * ggp[u];
          }
          for (int64_t i = 0; i < D; ++i) {
            const T mi = mq[i], gi = gmq[i];
            const T* __restrict__ xi = xs + i * U;
            const T* __restrict__ ggxi = ggxs + i * U;
            T* __restrict__ dxi = dxs + i * U;
            T sum = T(0);
#pragma omp simd reduction(+ : sum)
            for (int64_t u = 0; u < U; ++u) {
              dxi[u] += cu[u] * gi + du[u] * mi;
              sum += cu[u] * ggxi[u] + du[u] * xi[u];
            }
            dm[q * D + i] = sum;
          }
        }
        T* __restrict__ ds = dsh + e * S;
        for (int64_t s = 0; s < S; ++s) {
          const T* __restrict__ c_ = cg + s * Q * D;
          T sum = T(0);
#pragma omp simd reduction(+ : sum)
          for (int64_t k = 0; k < Q * D; ++k) sum += c_[k] * dm[k];
          ds[s] += sum;
        }
      }
    }
  });
}

#define MOLEQUI_DISPATCH_U(U, ...)                                  \
  switch (U) {                                                      \
    case 8: { constexpr int64_t UC = 8; __VA_ARGS__; break; }       \
    case 16: { constexpr int64_t UC = 16; __VA_ARGS__; break; }     \
    case 32: { constexpr int64_t UC = 32; __VA_ARGS__; break; }     \
    case 64: { constexpr int64_t UC = 64; __VA_ARGS__; break; }     \
    case 128: { constexpr int64_t UC = 128; __VA_ARGS__; break; }   \
    default: { constexpr int64_t UC = 0; __VA_ARGS__; break; }      \
  }

void check_block(const torch::Tensor& x, const torch::Tensor& sh, const torch::Tensor& cg, const torch::Tensor& w,
                 int64_t offset, int64_t P, const torch::Tensor& path, const torch::Tensor& src,
                 const torch::Tensor& tgt) {
  TORCH_CHECK(x.dim() == 3 && sh.dim() == 2 && cg.dim() == 3 && w.dim() == 2, "fused_tp: bad ranks");
  TORCH_CHECK(x.is_contiguous() && sh.is_contiguous() && cg.is_contiguous() && w.stride(1) == 1 && path.is_contiguous() &&
              src.is_contiguous() && tgt.is_contiguous(), "fused_tp: contiguous tensors expected (w: rows)");
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == sh.scalar_type() && x.scalar_type() == cg.scalar_type() &&
              x.scalar_type() == w.scalar_type(), "fused_tp: CPU tensors of one float dtype expected");
  TORCH_CHECK(src.scalar_type() == torch::kLong && tgt.scalar_type() == torch::kLong &&
              path.scalar_type() == torch::kLong, "fused_tp: int64 indices expected");
  const int64_t E = sh.size(0), U = x.size(2);
  TORCH_CHECK(cg.size(0) == sh.size(1) && cg.size(2) == x.size(1) && w.size(0) == E && offset >= 0 &&
              offset + P * U <= w.size(1) && path.numel() == cg.size(1) && src.numel() == E && tgt.numel() == E,
              "fused_tp: shape mismatch");
  TORCH_CHECK(U <= kMaxU, "fused_tp: ", U, " channels in a block, more than the kernel's ", kMaxU);
  if (path.numel() > 0) {
    TORCH_CHECK(path.min().item<int64_t>() >= 0 && path.max().item<int64_t>() < P, "fused_tp: bad path index");
  }
}

// A caller's workspace [W, rows, cols, U] of per-part copies (W may be 0); returns W.
int64_t workspace_parts(const torch::Tensor& ws, const torch::Tensor& x, int64_t rows, int64_t cols, const char* name) {
  TORCH_CHECK(ws.dim() == 4 && ws.is_contiguous() && ws.size(1) == rows && ws.size(2) == cols &&
              ws.size(3) == x.size(2) && ws.scalar_type() == x.scalar_type(), name, ": bad workspace");
  return ws.size(0);
}

}  // namespace

// out [N, Q, U] += the block's messages of the given edges
void fused_tp_forward(torch::Tensor out, torch::Tensor workspace, torch::Tensor x, torch::Tensor sh, torch::Tensor cg,
                      torch::Tensor w, int64_t offset, int64_t P, torch::Tensor path, torch::Tensor src,
                      torch::Tensor tgt, bool sorted) {
  check_block(x, sh, cg, w, offset, P, path, src, tgt);
  const int64_t N = x.size(0), D = x.size(1), U = x.size(2), E = sh.size(0), S = sh.size(1), Q = cg.size(1);
  TORCH_CHECK(out.is_contiguous() && out.dim() == 3 && out.size(0) == N && out.size(1) == Q && out.size(2) == U &&
              out.scalar_type() == x.scalar_type(), "fused_tp_forward: bad output tensor");
  const int64_t W = workspace_parts(workspace, x, N, Q, "fused_tp_forward");
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_forward", [&] {
    MOLEQUI_DISPATCH_U(U, forward_impl<scalar_t, UC>(x.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(),
        cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0), path.data_ptr<int64_t>(),
        src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), workspace.data_ptr<scalar_t>(), W,
        N, E, S, Q, D, U, sorted));
  });
}

// gx [N, D, U], gsh [E, S] and gw [E, *] (the block's columns from `offset`) += the gradients, given g [N, Q, U]
void fused_tp_backward(torch::Tensor gx, torch::Tensor workspace, torch::Tensor gsh, torch::Tensor gw, torch::Tensor g,
                       torch::Tensor x,
                       torch::Tensor sh, torch::Tensor cg, torch::Tensor w, int64_t offset, int64_t P, torch::Tensor path,
                       torch::Tensor src, torch::Tensor tgt) {
  check_block(x, sh, cg, w, offset, P, path, src, tgt);
  const int64_t N = x.size(0), D = x.size(1), U = x.size(2), E = sh.size(0), S = sh.size(1), Q = cg.size(1);
  TORCH_CHECK(g.is_contiguous() && g.dim() == 3 && g.size(0) == N && g.size(1) == Q && g.size(2) == U &&
              g.scalar_type() == x.scalar_type(), "fused_tp_backward: bad output gradient");
  TORCH_CHECK(gx.is_contiguous() && gx.sizes() == x.sizes() && gx.scalar_type() == x.scalar_type() &&
              gsh.is_contiguous() && gsh.sizes() == sh.sizes() && gsh.scalar_type() == x.scalar_type() &&
              gw.dim() == 2 && gw.stride(1) == 1 && gw.size(0) == E && gw.size(1) >= offset + P * U &&
              gw.scalar_type() == x.scalar_type(), "fused_tp_backward: bad gradient tensors");
  const int64_t W = workspace_parts(workspace, x, N, D, "fused_tp_backward");
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_backward", [&] {
    MOLEQUI_DISPATCH_U(U, backward_impl<scalar_t, UC>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        sh.data_ptr<scalar_t>(), cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0),
        path.data_ptr<int64_t>(), src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), gx.data_ptr<scalar_t>(),
        workspace.data_ptr<scalar_t>(), W, gsh.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>() + offset, gw.stride(0), N,
        E, S, Q, D, U));
  });
}
// Second derivatives of the block (see double_backward_impl); every output accumulates.
void fused_tp_double_backward(torch::Tensor dg, torch::Tensor dg_workspace, torch::Tensor dx,
                              torch::Tensor dx_workspace, torch::Tensor dsh, torch::Tensor dw,
                              torch::Tensor gw, torch::Tensor g, torch::Tensor x, torch::Tensor sh, torch::Tensor cg,
                              torch::Tensor w, int64_t offset, int64_t P, torch::Tensor path, torch::Tensor src,
                              torch::Tensor tgt, torch::Tensor ggx, torch::Tensor ggsh, torch::Tensor ggw, bool sorted) {
  check_block(x, sh, cg, w, offset, P, path, src, tgt);
  const int64_t N = x.size(0), D = x.size(1), U = x.size(2), E = sh.size(0), S = sh.size(1), Q = cg.size(1);
  auto same = [&](const torch::Tensor& t, at::IntArrayRef sizes) {
    return t.is_contiguous() && t.sizes() == sizes && t.scalar_type() == x.scalar_type();
  };
  auto rows = [&](const torch::Tensor& t) {
    return t.dim() == 2 && t.stride(1) == 1 && t.size(0) == E && t.size(1) >= offset + P * U &&
           t.scalar_type() == x.scalar_type();
  };
  TORCH_CHECK(same(g, {N, Q, U}) && same(dg, {N, Q, U}) && same(dx, x.sizes()) && same(ggx, x.sizes()) &&
              same(dsh, sh.sizes()) && same(ggsh, sh.sizes()) && rows(dw) && rows(gw) && rows(ggw),
              "fused_tp_double_backward: bad tensors");
  const int64_t Wg = workspace_parts(dg_workspace, x, N, Q, "fused_tp_double_backward");
  const int64_t Wx = workspace_parts(dx_workspace, x, N, D, "fused_tp_double_backward");
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_double_backward", [&] {
    MOLEQUI_DISPATCH_U(U, double_backward_impl<scalar_t, UC>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        sh.data_ptr<scalar_t>(), cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0),
        path.data_ptr<int64_t>(), src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), ggx.data_ptr<scalar_t>(),
        ggsh.data_ptr<scalar_t>(), ggw.data_ptr<scalar_t>() + offset, ggw.stride(0), dg.data_ptr<scalar_t>(),
        dg_workspace.data_ptr<scalar_t>(), Wg, dx.data_ptr<scalar_t>(), dx_workspace.data_ptr<scalar_t>(), Wx,
        dsh.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>() + offset, dw.stride(0),
        gw.data_ptr<scalar_t>() + offset, gw.stride(0), N, E, S, Q, D, U, sorted));
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "molequi's fused tensor product + scatter-sum kernel (one input irrep block per call)";
  m.def("fused_tp_forward", &fused_tp_forward, "out [N, Q, U] += the block's messages of the given edges");
  m.def("fused_tp_backward", &fused_tp_backward, "gx, gsh, gw += the first derivatives, given g = d/d(out)");
  m.def("fused_tp_double_backward", &fused_tp_double_backward, "second derivatives of the block");
  m.def("parallel_parts", &num_parts, "edge ranges (threads) a call on this many edges is split into");
  m.attr("max_channels") = kMaxU;
}
