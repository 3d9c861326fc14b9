"""Norm nonlinearity: every irrep channel rescaled by an activation of its norm (Harmonic Networks), smooth at 0."""

from __future__ import annotations

import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, resolve_activation


class NormActivation(EquivariantNonlinearity):
    """Rescale every irrep channel by an activation of a smooth norm plus a learnable bias.

    For each channel ``c`` (one copy of one irrep) with squared norm ``s = |f_c|^2``::

        out_c = sigma(rho + b_c) f_c / sqrt(1 + s),   rho = sqrt(1 + s) - 1 = s / (sqrt(1 + s) + 1).

    For large ``|f_c|`` this is Harmonic Networks' ``sigma(|f_c| + b_c - 1) f_c / |f_c|`` up to
    ``O(1 / |f_c|)``: the direction is kept and the magnitude is ``sigma`` of the norm. Unlike that
    form, whose size tends to ``sigma(b_c) != 0`` as ``f_c -> 0`` (a jump at ``f_c = 0`` and an
    unbounded gradient near it, e.g. where a convolution's messages vanish at the cutoff), the
    output is ``g(s) f_c`` with ``g(s) = sigma(rho(s) + b_c) / sqrt(1 + s)`` smooth for every
    ``s >= 0`` (``rho`` and ``sqrt(1 + s)`` are analytic there): it vanishes at ``f_c = 0`` with
    Jacobian ``sigma(b_c) I``, and is as smooth as ``sigma``. ``s`` is an invariant, so the layer is
    exactly O(3)-equivariant for any ``sigma`` and any irreps, scalars included.

    Args:
        irreps_out: any irreps; ``irreps_in = irreps_out``.
        act: ``sigma`` (default ``"silu"``), a name or a callable.

    Shapes:
        ``[..., irreps_out.dim] -> [..., irreps_out.dim]``.
    """

    family = "norm"

    def __init__(self, irreps_out: o3.Irreps | str, act: ActivationLike = "silu") -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        if irreps.dim == 0:
            raise ValueError(f"norm nonlinearity: irreps {irreps!r} are empty; it needs at least one channel")
        self.irreps_in = irreps
        self.irreps_out = irreps
        self.exact = True
        self.act = resolve_activation(act, self.family)
        self.bias = torch.nn.Parameter(torch.zeros(irreps.num_irreps))
        # channel id of every feature component: [irreps.dim] -> [0, irreps.num_irreps)
        channel = torch.cat(
            [torch.arange(mul).repeat_interleave(ir.dim) + offset for (mul, ir), offset in zip(irreps, _offsets(irreps))]
        )
        self.register_buffer("channel", channel, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., dim] -> [..., dim]``."""
        squared = features.new_zeros(features.shape[:-1] + (self.irreps_in.num_irreps,))
        squared = squared.index_add(-1, self.channel, features * features)  # [..., num_irreps]
        root = torch.sqrt(1.0 + squared)
        scale = self.act(squared / (root + 1.0) + self.bias) / root
        return features * scale[..., self.channel]


def _offsets(irreps: o3.Irreps) -> list[int]:
    """First channel index of each ``(mul, ir)`` entry."""
    offsets, total = [], 0
    for mul, _ in irreps:
        offsets.append(total)
        total += mul
    return offsets
