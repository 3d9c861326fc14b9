"""Tensor-product nonlinearity: an equivariant quadratic polynomial through Clebsch-Gordan products.

This is the nonlinearity of Kondor's Clebsch-Gordan nets and N-body networks (and Cormorant):
``f -> W (f (x) f)`` restricted to the output irreps, plus a learnable linear skip.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

from .base import EquivariantNonlinearity


class TensorProductActivation(EquivariantNonlinearity):
    """``out = (W_out CG(h (x) h) + W_skip f) / sqrt(2)`` with ``h = W_in f / sqrt(1 + <(W_in f)^2>)``.

    ``W_in`` mixes the input into ``channels`` copies of every irrep type it contains; the
    Clebsch-Gordan square is taken channel-wise (channel ``u`` of irrep ``a`` with channel ``u`` of
    irrep ``b``, Cormorant's "CG square"), keeping only the products whose irreps occur in
    ``irreps_out`` (and dropping the antisymmetric parts of a channel with itself, which vanish).
    Every product path is divided by its root-mean-square under unit Gaussian inputs (estimated
    once at construction with a fixed seed), and ``W_in``, ``W_out``, ``W_skip`` are e3nn's
    variance-preserving linear maps. A bare quadratic iterated through depth grows doubly
    exponentially, so ``h`` is softly normalised by its mean square over all components
    ``<h^2>`` (an invariant, so equivariance stays exact): for small inputs the layer is the
    quadratic polynomial, for large ones the square saturates, and activations stay of unit
    variance through any depth.

    Args:
        irreps_out: the output irreps; each irrep must be reachable from ``irreps_in`` by the
            square or the skip.
        irreps_in: the input irreps (default ``irreps_out``).
        channels: channel count of the square (default: the largest multiplicity of ``irreps_in``).

    Shapes:
        ``[..., irreps_in.dim] -> [..., irreps_out.dim]``.
    """

    family = "tensor_product"

    def __init__(
        self, irreps_out: o3.Irreps | str, irreps_in: o3.Irreps | str | None = None, channels: int | None = None
    ) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        irreps_in = irreps_out if irreps_in is None else o3.Irreps(irreps_in)
        if irreps_in.dim == 0 or irreps_out.dim == 0:
            raise ValueError(
                f"tensor_product nonlinearity: irreps_in {irreps_in!r} -> irreps_out {irreps_out!r}: both must be non-empty"
            )
        channels = channels or max(mul for mul, _ in irreps_in)
        hidden = o3.Irreps([(channels, ir) for _, ir in irreps_in.sort().irreps.simplify()])
        targets = {ir for _, ir in irreps_out}
        mid, instructions = [], []
        for i, (_, ir_a) in enumerate(hidden):
            for j, (_, ir_b) in enumerate(hidden):
                if j < i:
                    continue
                for ir_c in ir_a * ir_b:
                    antisymmetric = i == j and (ir_a.l + ir_b.l - ir_c.l) % 2 == 1
                    if ir_c in targets and not antisymmetric:
                        instructions.append((i, j, len(mid), "uuu", False))
                        mid.append((channels, ir_c))
        reachable = {ir for _, ir in mid} | {ir for _, ir in irreps_in}
        missing = [str(ir) for ir in targets if ir not in reachable]
        if missing:
            raise ValueError(
                f"tensor_product nonlinearity: irreps_out {irreps_out} contains {', '.join(missing)}, which "
                f"neither the Clebsch-Gordan square nor the linear skip of irreps_in {irreps_in} can produce"
            )
        self.irreps_in, self.irreps_out, self.exact = irreps_in, irreps_out, True
        self.linear_in = o3.Linear(irreps_in, hidden)
        self.linear_skip = o3.Linear(irreps_in, irreps_out)
        if mid:
            irreps_mid = o3.Irreps(mid)
            self.square = o3.TensorProduct(hidden, hidden, irreps_mid, instructions, irrep_normalization="component")
            self.linear_out = o3.Linear(irreps_mid, irreps_out)
            self.register_buffer("path_scale", _inverse_rms_per_path(self.square, hidden, irreps_mid))
        else:
            self.square = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., irreps_in.dim] -> [..., irreps_out.dim]``."""
        skip = self.linear_skip(features)
        if self.square is None:
            return skip
        hidden = _soft_normalize(self.linear_in(features))
        products = self.square(hidden, hidden) * self.path_scale
        return (self.linear_out(products) + skip) / math.sqrt(2.0)


def _soft_normalize(hidden: torch.Tensor) -> torch.Tensor:
    """``h / sqrt(1 + mean(h^2))`` over the last axis: ``[..., d] -> [..., d]``."""
    return hidden * torch.rsqrt(1.0 + hidden.pow(2).mean(dim=-1, keepdim=True))


def _inverse_rms_per_path(square: o3.TensorProduct, hidden: o3.Irreps, irreps_mid: o3.Irreps) -> torch.Tensor:
    """``[irreps_mid.dim]``: 1 / RMS of each product path for ``h ~ N(0, 1)`` (fixed seed, 4096 samples)."""
    generator = torch.Generator().manual_seed(0)
    sample = _soft_normalize(torch.randn(4096, hidden.dim, generator=generator, dtype=torch.float64))
    with torch.no_grad():
        out = square.to(torch.float64)(sample, sample)
    square.to(torch.get_default_dtype())
    scale = torch.cat(
        [out[:, sl].pow(2).mean().rsqrt().expand(sl.stop - sl.start) for sl in irreps_mid.slices()]
    )
    return scale.to(torch.get_default_dtype())
