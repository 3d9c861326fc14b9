"""Equivariant point convolution as a PyTorch Geometric ``MessagePassing`` layer.

The per-edge tensor product runs in one of three ways, all giving the same numbers up to
floating-point rounding (``tests/benchmarks/test_fast_paths.py``):

1. the reference: PyG ``propagate`` with e3nn's ``TensorProduct`` (``conv.fused = False``);
2. fused PyTorch operations, channels last, grouped by input irrep block and output dimension
   (the default in training mode: differentiable to any order);
3. a fused C++ kernel (gather, Clebsch-Gordan contraction, radial weights and scatter-sum in one
   pass over the edges, with a hand-written backward), compiled once per machine on first use
   with PyTorch's C++ extension tool; the default in eval mode. It needs a C++ compiler; without
   one, or with ``MOLEQUI_FUSED_KERNEL=0`` in the environment, path 2 runs instead. A second
   derivative through it (``create_graph=True``) recomputes the block with path 2.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import platform
import warnings
from typing import Any

import torch
from e3nn import o3
from torch.autograd import forward_ad
from e3nn.nn import FullyConnectedNet
from torch_geometric.nn import MessagePassing

from ..edge_embedding import EdgeEmbedding, edge_vectors

_LOG = logging.getLogger(__name__)

#: C++ source of the fused kernel (path 3 of the module docstring), one input irrep block per call.
_KERNEL_SOURCE = r"""
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

template <typename T>
void add_into(T* out, const std::vector<T>& parts, int64_t size) {
  for (size_t off = 0; off < parts.size(); off += size) {
    const T* p = parts.data() + off;
    at::parallel_for(0, size, 16384, [&](int64_t a, int64_t z) {
      for (int64_t k = a; k < z; ++k) out[k] += p[k];
    });
  }
}

template <typename T, int64_t UC>
void forward_impl(const T* __restrict__ x, const T* __restrict__ sh, const T* __restrict__ cg, const T* __restrict__ w,
                  int64_t ldw, const int64_t* pidx, const int64_t* src, const int64_t* tgt, T* out, int64_t N,
                  int64_t E, int64_t S, int64_t Q, int64_t D, int64_t U_, bool sorted) {
  const int64_t U = UC > 0 ? UC : U_;
  const int64_t parts = num_parts(E);
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, sorted);
  const bool shared = sorted || parts == 1;
  std::vector<T> extra(shared ? 0 : (parts - 1) * N * Q * U, T(0));
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D);
    alignas(64) T acc[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* o = (shared || c == 0) ? out : extra.data() + (c - 1) * N * Q * U;
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
  if (!extra.empty()) add_into(out, extra, N * Q * U);
}

template <typename T, int64_t UC>
void backward_impl(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ sh, const T* __restrict__ cg,
                   const T* __restrict__ w, int64_t ldw, const int64_t* pidx, const int64_t* src, const int64_t* tgt,
                   T* gx, T* __restrict__ gsh, T* __restrict__ gw, int64_t ldgw, int64_t N, int64_t E, int64_t S,
                   int64_t Q, int64_t D, int64_t U_) {
  const int64_t U = UC > 0 ? UC : U_;
  const int64_t parts = num_parts(E);
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, false);
  std::vector<T> extra((parts - 1) * N * D * U, T(0));  // gx is scattered by source: one copy per extra thread
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D), gm(Q * D);
    alignas(64) T acc[UC > 0 ? UC : kMaxU];
    alignas(64) T gwu[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* gxc = c == 0 ? gx : extra.data() + (c - 1) * N * D * U;
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
  if (!extra.empty()) add_into(gx, extra, N * D * U);
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
                          const T* __restrict__ ggsh, const T* __restrict__ ggw, int64_t ldggw, T* dg, T* dx,
                          T* __restrict__ dsh, T* __restrict__ dw, int64_t lddw, T* __restrict__ gw, int64_t ldgw,
                          int64_t N, int64_t E, int64_t S, int64_t Q, int64_t D, int64_t U_, bool sorted) {
  const int64_t U = UC > 0 ? UC : U_;
  const int64_t parts = num_parts(E);
  const std::vector<int64_t> b = edge_chunks(tgt, E, parts, sorted);
  const bool shared_dg = sorted || parts == 1;
  std::vector<T> extra_dg(shared_dg ? 0 : (parts - 1) * N * Q * U, T(0));
  std::vector<T> extra_dx((parts - 1) * N * D * U, T(0));
  at::parallel_for(0, parts, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> m(Q * D), ggm(Q * D), dm(Q * D);
    alignas(64) T t_[UC > 0 ? UC : kMaxU];
    alignas(64) T ab[UC > 0 ? UC : kMaxU];
    alignas(64) T cu[UC > 0 ? UC : kMaxU];
    alignas(64) T du[UC > 0 ? UC : kMaxU];
    for (int64_t c = c0; c < c1; ++c) {
      T* dgc = (shared_dg || c == 0) ? dg : extra_dg.data() + (c - 1) * N * Q * U;
      T* dxc = c == 0 ? dx : extra_dx.data() + (c - 1) * N * D * U;
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
  if (!extra_dg.empty()) add_into(dg, extra_dg, N * Q * U);
  if (!extra_dx.empty()) add_into(dx, extra_dx, N * D * U);
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
              offset + P * U <= w.size(1) && path.numel() == cg.size(1) && src.numel() == E && tgt.numel() == E &&
              U <= kMaxU, "fused_tp: shape mismatch");
  if (path.numel() > 0) {
    TORCH_CHECK(path.min().item<int64_t>() >= 0 && path.max().item<int64_t>() < P, "fused_tp: bad path index");
  }
}

}  // namespace

// out [N, Q, U] += the block's messages of the given edges
void fused_tp_forward(torch::Tensor out, torch::Tensor x, torch::Tensor sh, torch::Tensor cg, torch::Tensor w,
                      int64_t offset, int64_t P, torch::Tensor path, torch::Tensor src, torch::Tensor tgt, bool sorted) {
  check_block(x, sh, cg, w, offset, P, path, src, tgt);
  const int64_t N = x.size(0), D = x.size(1), U = x.size(2), E = sh.size(0), S = sh.size(1), Q = cg.size(1);
  TORCH_CHECK(out.is_contiguous() && out.dim() == 3 && out.size(0) == N && out.size(1) == Q && out.size(2) == U &&
              out.scalar_type() == x.scalar_type(), "fused_tp_forward: bad output tensor");
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_forward", [&] {
    MOLEQUI_DISPATCH_U(U, forward_impl<scalar_t, UC>(x.data_ptr<scalar_t>(), sh.data_ptr<scalar_t>(),
        cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0), path.data_ptr<int64_t>(),
        src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), N, E, S, Q, D, U, sorted));
  });
}

// gx [N, D, U], gsh [E, S] and gw [E, *] (the block's columns from `offset`) += the gradients, given g [N, Q, U]
void fused_tp_backward(torch::Tensor gx, torch::Tensor gsh, torch::Tensor gw, torch::Tensor g, torch::Tensor x,
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
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_backward", [&] {
    MOLEQUI_DISPATCH_U(U, backward_impl<scalar_t, UC>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        sh.data_ptr<scalar_t>(), cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0),
        path.data_ptr<int64_t>(), src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), gx.data_ptr<scalar_t>(),
        gsh.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>() + offset, gw.stride(0), N, E, S, Q, D, U));
  });
}
// Second derivatives of the block (see double_backward_impl); every output accumulates.
void fused_tp_double_backward(torch::Tensor dg, torch::Tensor dx, torch::Tensor dsh, torch::Tensor dw,
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
  if (E == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fused_tp_double_backward", [&] {
    MOLEQUI_DISPATCH_U(U, double_backward_impl<scalar_t, UC>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(),
        sh.data_ptr<scalar_t>(), cg.data_ptr<scalar_t>(), w.data_ptr<scalar_t>() + offset, w.stride(0),
        path.data_ptr<int64_t>(), src.data_ptr<int64_t>(), tgt.data_ptr<int64_t>(), ggx.data_ptr<scalar_t>(),
        ggsh.data_ptr<scalar_t>(), ggw.data_ptr<scalar_t>() + offset, ggw.stride(0), dg.data_ptr<scalar_t>(),
        dx.data_ptr<scalar_t>(), dsh.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>() + offset, dw.stride(0),
        gw.data_ptr<scalar_t>() + offset, gw.stride(0), N, E, S, Q, D, U, sorted));
  });
}
"""

_kernel_module: Any = None  # None: not loaded yet; False: unavailable


def fused_kernel() -> Any:
    """The compiled fused tensor-product kernel, building it on first use; ``None`` where unavailable.

    Built with ``torch.utils.cpp_extension.load_inline`` into ``TORCH_EXTENSIONS_DIR`` (default
    ``~/.cache/torch_extensions``) under a name that hashes the source, the torch version and the
    CPU, so one build serves every later process on the machine. ``MOLEQUI_FUSED_KERNEL=0``
    disables it.
    """
    global _kernel_module
    if _kernel_module is None:
        _kernel_module = False
        if os.environ.get("MOLEQUI_FUSED_KERNEL", "1") != "0":
            try:
                from torch.utils.cpp_extension import load_inline

                cpu = ""
                if os.path.exists("/proc/cpuinfo"):
                    with open("/proc/cpuinfo") as info:
                        cpu = next((line for line in info if line.startswith("flags")), "")
                flags = ["-O3", "-march=native", "-fopenmp", "-std=c++17"]
                key = "|".join([_KERNEL_SOURCE, torch.__version__, platform.machine(), cpu, *flags])
                name = "molequi_fused_tp_" + hashlib.sha1(key.encode()).hexdigest()[:12]
                _LOG.info("building the fused tensor-product kernel %s (once per machine)", name)
                _kernel_module = load_inline(
                    name,
                    _KERNEL_SOURCE,
                    functions=["fused_tp_forward", "fused_tp_backward", "fused_tp_double_backward"],
                    extra_cflags=flags,
                    extra_ldflags=["-fopenmp"],
                )
            except Exception as error:  # no compiler, no headers, ...: the PyTorch path serves
                warnings.warn(
                    f"molequi: the fused C++ tensor-product kernel is unavailable ({type(error).__name__}: "
                    f"{str(error)[:200]}); EquivariantConv uses its PyTorch path (same results, slower)",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _kernel_module or None


def _block_eager(
    x_block: torch.Tensor,
    edge_sh: torch.Tensor,
    weights: torch.Tensor,
    cg: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    groups: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """Path 2 for one input block: ``[N, d_in, mul] -> [N, Q, mul]`` with PyTorch operations.

    ``weights [E, P, mul]``, ``cg [sh_dim, Q, d_in]``; ``groups``: ``(P_g, d_out_g)`` of the block's
    groups of paths with equal output dimension, in order (``Q = sum_g P_g * d_out_g``).
    """
    num_nodes, dim_in, mul = x_block.shape
    num_edges = edge_sh.shape[0]
    x_j = x_block.reshape(num_nodes, dim_in * mul).index_select(0, source).reshape(num_edges, dim_in, mul)
    outputs, row, path = [], 0, 0
    for num_paths, d_out in groups:
        rows = num_paths * d_out
        path_map = edge_sh @ cg[:, row : row + rows].reshape(cg.shape[0], rows * dim_in)  # [E, P * d_out * d_in]
        w = weights[:, path : path + num_paths].reshape(num_edges, num_paths, 1, mul)
        if dim_in == 1:
            message = path_map.reshape(num_edges, num_paths, d_out, 1) * (x_j.reshape(num_edges, 1, 1, mul) * w)
        else:
            product = torch.bmm(path_map.reshape(num_edges, rows, dim_in), x_j)  # [E, P * d_out, mul]
            message = product.reshape(num_edges, num_paths, d_out, mul) * w
        outputs.append(x_block.new_zeros(num_nodes, rows * mul).index_add_(0, target, message.reshape(num_edges, rows * mul)))
        row, path = row + rows, path + num_paths
    return torch.cat(outputs, dim=1).reshape(num_nodes, row, mul)


def _needed(needs_input_grad: tuple[bool, ...], inputs: tuple[Any, ...]) -> tuple[bool, ...]:
    """``needs_input_grad`` narrowed to the inputs whose gradient this backward pass will use.

    ``ctx.needs_input_grad`` only says which inputs require grad: computing forces with
    ``autograd.grad(energy, pos)`` would still get the radial MLP's parameter gradients computed and
    thrown away. Where torch can tell (its private ``_will_engine_execute_node``), gradients that
    lead nowhere the engine goes are skipped.
    """
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if will_execute is None:
        return needs_input_grad
    narrowed = []
    for need, tensor in zip(needs_input_grad, inputs):
        if need and isinstance(tensor, torch.Tensor) and tensor.grad_fn is not None:
            try:
                need = bool(will_execute(tensor.grad_fn))
            except RuntimeError:  # not inside a backward pass of the engine
                pass
        narrowed.append(need)
    return tuple(narrowed)


def _mlp(h: torch.Tensor, matrices: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The radial MLP with its scale factors folded in: SiLU between ``h @ W`` layers."""
    for matrix in matrices[:-1]:
        h = torch.nn.functional.silu(h @ matrix)
    return h @ matrices[-1]


class _RadialWeights:
    """The radial weights of every chunk of edges, kept with their autograd graphs or recomputed on demand.

    Keeping them (``cache=True``) saves one pass of the radial MLP per derivative and costs
    ``O(E * width)`` memory; recomputing keeps the memory ``O(chunk)``. Both give the same numbers.
    """

    def __init__(self, edge_radial: torch.Tensor, matrices: tuple[torch.Tensor, ...], chunk: int, cache: bool):
        self.edge_radial, self.chunk = edge_radial.detach(), chunk
        self.matrices = tuple(m.detach() for m in matrices)
        self.cached: dict[int, tuple[list[torch.Tensor], torch.Tensor]] = {}
        self.cache = cache

    def no_grad(self, start: int, stop: int) -> torch.Tensor:
        """``[stop - start, weight_numel]`` without a graph (forward pass); fills the cache when caching."""
        if self.cache:
            return self.with_graph(start, stop)[1].detach()
        return _mlp(self.edge_radial[start:stop], self.matrices)

    def with_graph(self, start: int, stop: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(leaves, weights)``: ``leaves = [edge_radial chunk, *matrices]`` (all requiring grad) and the weights."""
        if start in self.cached:
            return self.cached[start]
        with torch.enable_grad():
            leaves = [self.edge_radial[start:stop].detach().requires_grad_(True)]
            leaves += [m.detach().requires_grad_(True) for m in self.matrices]
            result = (leaves, _mlp(leaves[0], tuple(leaves[1:])))
        if self.cache:
            self.cached[start] = result
        return result


def _kernel_gradients(plan, radial_weights, edge_sh, edge_index, x_blocks, grads, needs):
    """First derivatives of path 3 with the kernel, chunk by chunk.

    ``radial_weights``: a :class:`_RadialWeights`; ``needs``: flags for ``(edge_radial, edge_sh,
    *x_blocks, *matrices)``; returns the gradients in that order, ``None`` where not needed.
    """
    kernel = fused_kernel()
    cgs, paths, sizes, _, chunk, _, _ = plan
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    source, target = edge_index[0], edge_index[1]
    num_blocks = len(x_blocks)
    need_radial, need_sh, need_x, need_matrices = needs[0], needs[1], needs[2 : 2 + num_blocks], needs[2 + num_blocks :]
    grads = [g.contiguous() for g in grads]
    grad_x = [torch.zeros_like(x) for x in x_blocks]
    grad_sh = torch.zeros_like(edge_sh)
    grad_radial = torch.zeros_like(radial_weights.edge_radial) if need_radial else None
    grad_matrices = [torch.zeros_like(m) if need else None for m, need in zip(radial_weights.matrices, need_matrices)]
    grad_weights = None
    for start in range(0, edge_sh.shape[0], chunk):
        stop = min(start + chunk, edge_sh.shape[0])
        sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
        leaves, weights = radial_weights.with_graph(start, stop)
        if grad_weights is None or grad_weights.shape[0] != stop - start:
            grad_weights = torch.zeros_like(weights)  # one buffer for every full chunk
        else:
            grad_weights.zero_()
        for g, gx, x, cg, path, offset, size in zip(grads, grad_x, x_blocks, cgs, paths, offsets, sizes):
            kernel.fused_tp_backward(
                gx, grad_sh[start:stop], grad_weights, g, x, sh, cg, weights.detach(), offset, size // x.shape[2],
                path, src, tgt,
            )
        wanted = [need_radial, *need_matrices]
        inputs = [t for t, need in zip(leaves, wanted) if need]
        if inputs:
            found = iter(torch.autograd.grad(weights, inputs, grad_weights, retain_graph=radial_weights.cache))
            if need_radial:
                grad_radial[start:stop] = next(found)
            for k, need in enumerate(need_matrices):
                if need:
                    grad_matrices[k] += next(found)
    result = [grad_radial, grad_sh if need_sh else None]
    return result + [gx if need else None for gx, need in zip(grad_x, need_x)] + grad_matrices


class _ChunkedEdges(torch.autograd.Function):
    """Path 3: radial MLP and every block's tensor product, over chunks of edges, without storing per-edge data.

    Forward: for each chunk of ``edge_chunk`` edges, the radial weights, then the kernel accumulates
    each block's messages into its node output ``[N, Q, mul]``. Backward: recomputes each chunk's
    radial weights (with autograd, for the MLP's part), runs the kernel's backward, and pulls the
    radial-weight gradient back through the MLP. Memory is ``O(N + chunk)`` beyond the inputs,
    and a chunk's intermediates stay in cache. The first derivatives are the same numbers whether
    or not ``create_graph=True``; second derivatives come from :class:`_ChunkedEdgesGradient`.

    Inputs: ``edge_radial [E, num_radial]``, ``edge_sh [E, sh_dim]``, ``edge_index [2, E]``, the
    static plan, the number of blocks, then the blocks' ``x_block [N, d_in, mul]`` and the radial
    MLP's matrices. Outputs: the blocks' ``[N, Q, mul]``.
    """

    @staticmethod
    def forward(ctx, edge_radial, edge_sh, edge_index, plan, num_blocks, *tensors):
        kernel = fused_kernel()
        x_blocks, matrices = tensors[:num_blocks], tensors[num_blocks:]
        cgs, paths, sizes, _, chunk, targets_sorted, cache = plan
        offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        source, target = edge_index[0], edge_index[1]
        radial_weights = _RadialWeights(edge_radial, matrices, chunk, cache)
        outputs = [x.new_zeros(x.shape[0], cg.shape[1], x.shape[2]) for x, cg in zip(x_blocks, cgs)]
        for start in range(0, edge_sh.shape[0], chunk):
            stop = min(start + chunk, edge_sh.shape[0])
            weights = radial_weights.no_grad(start, stop)  # [chunk, weight_numel]
            sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
            for out, x, cg, path, offset, size in zip(outputs, x_blocks, cgs, paths, offsets, sizes):
                num_paths = size // x.shape[2]
                kernel.fused_tp_forward(out, x, sh, cg, weights, offset, num_paths, path, src, tgt, targets_sorted)
        ctx.save_for_backward(edge_radial, edge_sh, edge_index, *tensors)
        ctx.plan, ctx.num_blocks, ctx.radial_weights = plan, num_blocks, radial_weights
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        edge_radial, edge_sh, edge_index, *tensors = ctx.saved_tensors
        num_blocks = ctx.num_blocks
        needs = _needed(ctx.needs_input_grad, (edge_radial, edge_sh, None, None, None, *tensors))
        needs = needs[:2] + needs[5:]  # (edge_radial, edge_sh, *x_blocks, *matrices)
        if torch.is_grad_enabled():  # create_graph=True: the same values, differentiable once more
            outs = _ChunkedEdgesGradient.apply(
                ctx.plan, ctx.radial_weights, num_blocks, needs, edge_radial, edge_sh, edge_index, *tensors, *grads
            )
            result = [out if need else None for out, need in zip(outs, needs)]
        else:
            result = _kernel_gradients(ctx.plan, ctx.radial_weights, edge_sh, edge_index, tensors[:num_blocks], grads, needs)
        return (result[0], result[1], None, None, None, *result[2:])


class _ChunkedEdgesGradient(torch.autograd.Function):
    """First derivatives of :class:`_ChunkedEdges` (kernel values), differentiable once more.

    Forward: :func:`_kernel_gradients` (zeros where a gradient is not needed). Backward (second
    derivatives, e.g. a force loss in training), chunk by chunk: the kernel's second derivatives of
    the tensor product, the radial weights' tangent along the incoming gradients by forward-mode
    AD, and the radial MLP's own second derivatives by autograd. Third derivatives are not supported.
    """

    @staticmethod
    def forward(ctx, plan, radial_weights, num_blocks, needs, edge_radial, edge_sh, edge_index, *rest):
        num_tensors = len(rest) - num_blocks  # rest: x_blocks, matrices, then one gradient per block
        tensors, grads = rest[:num_tensors], rest[num_tensors:]
        result = _kernel_gradients(plan, radial_weights, edge_sh, edge_index, tensors[:num_blocks], grads, needs)
        inputs = (edge_radial, edge_sh, *tensors)
        ctx.save_for_backward(edge_radial, edge_sh, edge_index, *rest)
        ctx.plan, ctx.num_blocks, ctx.needs, ctx.num_tensors = plan, num_blocks, needs, num_tensors
        ctx.radial_weights = radial_weights
        return tuple(g if g is not None else torch.zeros_like(t) for g, t in zip(result, inputs))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_grads):
        edge_radial, edge_sh, edge_index, *rest = ctx.saved_tensors
        num_blocks, num_tensors = ctx.num_blocks, ctx.num_tensors
        tensors, grads = rest[:num_tensors], [g.contiguous() for g in rest[num_tensors:]]
        x_blocks, matrices = tensors[:num_blocks], tuple(t.detach() for t in tensors[num_blocks:])
        gg_radial, gg_sh = grad_grads[0], grad_grads[1].contiguous()
        gg_x = [g.contiguous() for g in grad_grads[2 : 2 + num_blocks]]
        gg_matrices = grad_grads[2 + num_blocks :]
        kernel = fused_kernel()
        cgs, paths, sizes, _, chunk, targets_sorted, _ = ctx.plan
        radial_weights = ctx.radial_weights
        offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        source, target = edge_index[0], edge_index[1]
        d_grads = [torch.zeros_like(g) for g in grads]
        d_x = [torch.zeros_like(x) for x in x_blocks]
        d_sh = torch.zeros_like(edge_sh)
        d_radial = torch.zeros_like(edge_radial)
        d_matrices = [torch.zeros_like(m) for m in matrices]
        # which incoming second-order gradients of the radial MLP's inputs are non-zero (training with a
        # force loss: only the one of edge_radial; the matrices' first derivatives were not asked for)
        active = [bool(gg_radial.any()), *(bool(g.any()) for g in gg_matrices)]
        for start in range(0, edge_sh.shape[0], chunk):
            stop = min(start + chunk, edge_sh.shape[0])
            sh, src, tgt = edge_sh[start:stop], source[start:stop], target[start:stop]
            leaves, weights = radial_weights.with_graph(start, stop)
            incoming = [gg_radial[start:stop], *gg_matrices]
            if any(active):  # the radial weights' tangent along the incoming second-order gradients
                with forward_ad.dual_level():
                    duals = [
                        forward_ad.make_dual(t.detach(), g) if on else t.detach()
                        for t, g, on in zip(leaves, incoming, active)
                    ]
                    dual = _mlp(duals[0], tuple(duals[1:]))
                    grad_grad_weights = forward_ad.unpack_dual(dual).tangent.contiguous()
            else:
                grad_grad_weights = torch.zeros_like(weights)
            first_weights = torch.zeros_like(weights)  # first derivative with respect to the weights
            d_weights = torch.zeros_like(weights)
            for k in range(num_blocks):
                x, cg, path, offset, size = x_blocks[k], cgs[k], paths[k], offsets[k], sizes[k]
                kernel.fused_tp_double_backward(
                    d_grads[k], d_x[k], d_sh[start:stop], d_weights, first_weights, grads[k], x, sh, cg,
                    weights.detach(), offset, size // x.shape[2], path, src, tgt, gg_x[k], gg_sh[start:stop],
                    grad_grad_weights, targets_sorted,
                )
            with torch.enable_grad():
                scalar = (weights * d_weights).sum()
                if any(active):  # second derivatives of the radial MLP itself
                    wrt = [t for t, on in zip(leaves, active) if on]
                    first = torch.autograd.grad(
                        weights, wrt, first_weights, create_graph=True, retain_graph=True
                    )
                    for f, g in zip(first, [g for g, on in zip(incoming, active) if on]):
                        scalar = scalar + (f * g).sum()
                found = torch.autograd.grad(scalar, leaves, allow_unused=True, retain_graph=radial_weights.cache)
            if found[0] is not None:
                d_radial[start:stop] += found[0]
            for k, f in enumerate(found[1:]):
                if f is not None:
                    d_matrices[k] += f
        return (None, None, None, None, d_radial, d_sh, None, *d_x, *d_matrices, *d_grads)


class EquivariantConv(MessagePassing):
    r"""Tensor-product convolution on e3nn irreps (Tensor Field Networks, NequIP).

    .. math::
        x'_i = W_{out} \frac{1}{\sqrt{\bar n}} \sum_{j \in \mathcal N(i)}
               (W_{in} x_j) \otimes_{R(r_{ij})} Y(\hat r_{ij})

    The tensor product is channel-wise ("uvu": every input channel with every spherical harmonic),
    its path weights come from a radial MLP on a Bessel basis times a smooth polynomial cutoff
    envelope (so messages vanish smoothly at ``r_max``), and the sum over neighbours is divided by
    the square root of the average neighbour count ``avg_num_neighbors``.

    The forward pass does not run e3nn's per-edge ``TensorProduct`` module (kept as
    ``self.tensor_product``, and used by :meth:`message`, as the reference definition). It computes
    the same numbers, up to floating-point rounding, per input irrep block: the Clebsch-Gordan
    coefficients of all the block's paths are contracted with the spherical harmonics per edge,
    applied to the gathered source features (channels last), multiplied by the radial weights and
    summed into the target nodes, either with a few batched PyTorch operations or, in eval mode,
    with a fused C++ kernel that never stores per-edge messages (see the module docstring). The
    outputs are then put in ``irreps_mid`` order on the nodes (``N << E``). ``conv.fused = False``
    runs the reference path (PyG ``propagate`` with e3nn's module); ``conv.kernel = False`` keeps
    the PyTorch path in eval mode too.

    Args:
        irreps_in: node feature irreps, e.g. ``"32x0e+16x1o"``.
        irreps_out: output irreps; each must be reachable from ``irreps_in (x) irreps_sh``.
        irreps_sh: spherical harmonics, irreps or ``lmax`` (default 2).
        num_radial: number of Bessel functions (default 8).
        r_max: cutoff radius in Å (default 5.0).
        radial_hidden: hidden widths of the radial MLP (default ``(64, 64)``).
        avg_num_neighbors: normaliser of the sum aggregation (default 1.0; set it from the data).
        cutoff_p: exponent of the cutoff envelope (default 6).

    Shapes:
        - **input:** ``x [N, irreps_in.dim]``, ``pos [N, 3]``, ``edge_index [2, E]`` (PyG: row 0 is
          the source ``j``, row 1 the target ``i``); optionally ``edge_vec [E, 3]`` (from target to
          source, periodic images included) or precomputed ``edge_sh [E, irreps_sh.dim]`` and
          ``edge_radial [E, num_radial]``.
        - **output:** ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str | int = 2,
        num_radial: int = 8,
        r_max: float = 5.0,
        radial_hidden: tuple[int, ...] = (64, 64),
        avg_num_neighbors: float = 1.0,
        cutoff_p: int = 6,
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.edge_embedding = EdgeEmbedding(irreps_sh, r_max, num_radial, cutoff_p)
        self.irreps_sh = self.edge_embedding.irreps_sh
        self.avg_num_neighbors = float(avg_num_neighbors)

        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for k, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in wanted:
                        instructions.append((i, k, len(mid), "uvu", True))
                        mid.append((mul, ir))
        reached = {ir for _, ir in mid}
        missing = [str(ir) for ir in wanted if ir not in reached]
        if missing:
            raise ValueError(
                f"EquivariantConv: irreps_out {self.irreps_out} contains {', '.join(missing)}, which "
                f"irreps_in {self.irreps_in} (x) irreps_sh {self.irreps_sh} cannot produce"
            )
        self.irreps_mid = o3.Irreps(mid)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tensor_product = o3.TensorProduct(
            self.irreps_in, self.irreps_sh, self.irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial_mlp = FullyConnectedNet(
            [num_radial, *radial_hidden, self.tensor_product.weight_numel], torch.nn.functional.silu
        )
        self.linear_out = o3.Linear(self.irreps_mid, self.irreps_out)
        #: Run the fused per-edge tensor product (default) or the reference e3nn module via ``propagate``.
        self.fused = True
        #: In eval mode, run the fused tensor product with the C++ kernel when it can be built.
        self.kernel = True
        #: Edges per chunk of the kernel path (its per-edge intermediates stay in cache).
        self.edge_chunk = 4096
        #: The kernel path keeps the radial MLP's activations for the backward pass (instead of
        #: recomputing them) when they take at most this many bytes.
        self.edge_cache_bytes = 64 * 2**20
        self._build_fused_plan()

    def _build_fused_plan(self) -> None:
        """Constants of the fused tensor product (non-persistent buffers: model files are unchanged).

        Paths are grouped by input irrep block ``b`` (``mul`` channels of dimension ``d``) and, within
        a block, by output dimension ``d_out`` (``P_g`` paths per group). Channels are kept last
        (``[..., mul]``) so that every per-channel operation runs over contiguous memory. Per block:

        - ``_cg_b [sh_dim, Q, d]``: rows ``q = (group, p, k)`` hold ``path_weight * w3j(l_in, l_sh, l_out)``
          of path ``p`` and output component ``k``, times ``1 / sqrt(avg_num_neighbors)``, so that
          ``edge_sh @ _cg_b`` is the per-edge ``[Q, d]`` map of the block's paths;
        - ``_path_b [Q]``: the block-local path of every row;
        - its radial weights are ``P * mul`` consecutive outputs of the radial MLP, ordered ``(p, u)``
          (``_weight_perm`` reorders the columns of the MLP's last layer to that order);
        - its node output is ``[N, Q, mul]``.

        ``_perm [irreps_mid.dim]`` says where each ``irreps_mid`` entry (e3nn's ``[mul, d_out]``
        layout per path) sits in the concatenation of the blocks' flattened node outputs.
        """
        tp, sh = self.tensor_product, self.irreps_sh
        instructions = list(tp.instructions)
        weight_offsets, offset = [], 0
        for ins in instructions:
            weight_offsets.append(offset)
            offset += math.prod(ins.path_shape) if ins.has_weight else 0
        sh_slices, in_slices, mid_slices = sh.slices(), self.irreps_in.slices(), self.irreps_mid.slices()
        norm = 1.0 / math.sqrt(self.avg_num_neighbors)
        perm = torch.zeros(self.irreps_mid.dim, dtype=torch.long)
        weight_perm: list[torch.Tensor] = []
        #: per block: (start, stop, mul, d_in, ((P_g, d_out_g), ...))
        self._blocks: list[tuple[int, int, int, int, tuple[tuple[int, int], ...]]] = []
        column_start = 0
        dtype = torch.get_default_dtype()
        for i_in, (mul, ir_in) in enumerate(self.irreps_in):
            paths = [k for k, ins in enumerate(instructions) if ins.i_in1 == i_in and 0 not in ins.path_shape]
            if mul == 0 or not paths:
                continue
            dims = {k: self.irreps_mid[instructions[k].i_out].ir.dim for k in paths}
            ordered = sorted(paths, key=lambda k: (dims[k], paths.index(k)))  # grouped by d_out
            rows = sum(dims.values())
            cg = torch.zeros(sh.dim, rows, ir_in.dim, dtype=torch.float64)
            path_index = torch.zeros(rows, dtype=torch.long)
            u = torch.arange(mul)[:, None]
            row = 0
            for p, k in enumerate(ordered):
                ins, d_out = instructions[k], dims[k]
                l_sh, l_out = sh[ins.i_in2].ir.l, self.irreps_mid[ins.i_out].ir.l
                w3j = o3.wigner_3j(ir_in.l, l_sh, l_out, dtype=torch.float64)  # [d_in, d_sh, d_out]
                cg[sh_slices[ins.i_in2], row : row + d_out, :] = norm * ins.path_weight * w3j.permute(1, 2, 0)
                path_index[row : row + d_out] = p
                cols = torch.arange(d_out)[None, :]
                perm[mid_slices[ins.i_out].start + u * d_out + cols] = column_start + (row + cols) * mul + u
                row += d_out
            # radial weight (p, u) of the block is column weight_offsets[ordered[p]] + u of the reference layout
            weight_perm.append(torch.tensor([weight_offsets[k] for k in ordered])[:, None] + torch.arange(mul))
            counts: dict[int, int] = {}
            for k in ordered:
                counts[dims[k]] = counts.get(dims[k], 0) + 1
            index = len(self._blocks)
            self.register_buffer(f"_cg_{index}", cg.to(dtype), persistent=False)
            self.register_buffer(f"_path_{index}", path_index, persistent=False)
            groups = tuple((count, d_out) for d_out, count in counts.items())
            self._blocks.append((in_slices[i_in].start, in_slices[i_in].stop, mul, ir_in.dim, groups))
            column_start += rows * mul
        self.register_buffer("_perm", perm, persistent=False)
        order = torch.cat([w.reshape(-1) for w in weight_perm]) if weight_perm else torch.zeros(0, dtype=torch.long)
        self.register_buffer("_weight_perm", order, persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_vec: torch.Tensor | None = None,
        edge_sh: torch.Tensor | None = None,
        edge_radial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [N, irreps_in.dim] -> [N, irreps_out.dim]`` (see the class docstring for the edge inputs)."""
        if edge_sh is None or edge_radial is None:
            if edge_vec is None:
                if pos is None:
                    raise ValueError("EquivariantConv: needs pos, edge_vec, or both edge_sh and edge_radial")
                edge_vec = edge_vectors(pos, edge_index)
            edge_sh, edge_radial = self.edge_embedding(edge_vec)
        if not self.fused:
            weights = self.radial_mlp(edge_radial)
            aggregated = self.propagate(edge_index, x=self.linear_in(x), edge_sh=edge_sh, weights=weights)
            return self.linear_out(aggregated / math.sqrt(self.avg_num_neighbors))
        x = self.linear_in(x)
        if self.kernel and x.device.type == "cpu" and fused_kernel() is not None:
            return self.linear_out(self._kernel_aggregate(x, edge_index, edge_sh, edge_radial))
        return self.linear_out(self._fused_aggregate(x, edge_index, edge_sh, self._radial_weights(edge_radial)))

    def _radial_matrices(self) -> tuple[torch.Tensor, ...]:
        """The radial MLP's weight matrices with e3nn's scale factors folded in, the last one's columns in block order.

        ``_mlp(edge_radial, matrices)`` equals ``self.radial_mlp(edge_radial)[:, self._weight_perm]``: the same
        arithmetic as e3nn's ``FullyConnectedNet`` (``x @ W / sqrt(fan_in)``, second-moment normalised SiLU),
        up to rounding.
        """
        layers = list(self.radial_mlp)
        matrices, scale = [], 1.0
        for layer in layers[:-1]:
            matrices.append(layer.weight * (scale / math.sqrt(layer.h_in * layer.var_in)))
            # normalize2mom(silu)(z) = cst * silu(z); cst and var_out go into the next layer
            scale = (1.0 if layer.act._is_id else layer.act.cst) * layer.var_out**0.5
        last = layers[-1]
        weight = last.weight.index_select(1, self._weight_perm)
        matrices.append(weight * (scale / math.sqrt(last.h_in * last.var_in / last.var_out)))
        return tuple(matrices)

    def _radial_weights(self, edge_radial: torch.Tensor) -> torch.Tensor:
        """``self.radial_mlp(edge_radial)[:, self._weight_perm]``: ``[E, weight_numel]`` in block order."""
        return _mlp(edge_radial, self._radial_matrices())

    def _block_inputs(self, x: torch.Tensor, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per block: source features channels last ``[N, d_in, mul]`` and Clebsch-Gordan maps ``[sh_dim, Q, d_in]``."""
        x_blocks, cgs = [], []
        for index, (start, stop, mul, dim_in, _) in enumerate(self._blocks):
            x_blocks.append(x[:, start:stop].reshape(x.shape[0], mul, dim_in).transpose(1, 2).contiguous())
            cgs.append(getattr(self, f"_cg_{index}").to(dtype))
        return x_blocks, cgs

    def _weight_sizes(self) -> list[int]:
        return [mul * sum(p for p, _ in groups) for *_, mul, _, groups in self._blocks]

    def _fused_aggregate(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Path 2: ``sum_{j -> i} tensor_product(x_j, edge_sh, w) / sqrt(avg_num_neighbors)`` as ``[N, irreps_mid.dim]``.

        ``weights [E, weight_numel]`` are the radial weights in the block order of :meth:`_radial_weights`.
        """
        source, target = edge_index[0], edge_index[1]
        num_nodes, num_edges = x.shape[0], edge_sh.shape[0]
        if not self._blocks:
            return x.new_zeros(num_nodes, self.irreps_mid.dim)
        x_blocks, cgs = self._block_inputs(x, edge_sh.dtype)
        outputs = []
        for x_block, w, cg, (*_, mul, _, groups) in zip(
            x_blocks, weights.split(self._weight_sizes(), dim=1), cgs, self._blocks
        ):
            w = w.reshape(num_edges, sum(p for p, _ in groups), mul)  # [E, P, mul]
            outputs.append(_block_eager(x_block, edge_sh, w, cg, source, target, groups).reshape(num_nodes, -1))
        return torch.cat(outputs, dim=1).index_select(1, self._perm)

    def _kernel_aggregate(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor
    ) -> torch.Tensor:
        """Path 3: as :meth:`_fused_aggregate`, radial MLP included, with the C++ kernel over chunks of edges."""
        num_nodes, num_edges = x.shape[0], edge_sh.shape[0]
        if not self._blocks:
            return x.new_zeros(num_nodes, self.irreps_mid.dim)
        target = edge_index[1]
        targets_sorted = bool((target[1:] >= target[:-1]).all()) if num_edges > 1 else True
        x_blocks, cgs = self._block_inputs(x, edge_sh.dtype)
        paths = [getattr(self, f"_path_{index}") for index in range(len(self._blocks))]
        groups = [block[-1] for block in self._blocks]
        matrices = self._radial_matrices()
        # keep the radial MLP's per-edge activations (no recomputation) while they fit the budget
        widths = sum(m.shape[1] for m in matrices[:-1]) * 2 + matrices[0].shape[0] + matrices[-1].shape[1]
        cache = num_edges * widths * edge_sh.element_size() <= self.edge_cache_bytes
        plan = (cgs, paths, self._weight_sizes(), groups, max(int(self.edge_chunk), 1), targets_sorted, cache)
        outputs = _ChunkedEdges.apply(
            edge_radial, edge_sh, edge_index.contiguous(), plan, len(x_blocks), *x_blocks, *matrices
        )
        return torch.cat([out.reshape(num_nodes, -1) for out in outputs], dim=1).index_select(1, self._perm)

    def message(self, x_j: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per edge: ``x_j [E, irreps_in.dim] (x) edge_sh [E, irreps_sh.dim] -> [E, irreps_mid.dim]``."""
        return self.tensor_product(x_j, edge_sh, weights)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out}, sh={self.irreps_sh})"
