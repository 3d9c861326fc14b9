"""Norm nonlinearity ``sigma(|f| + b) f / |f|`` per irrep channel (Harmonic Networks)."""

from __future__ import annotations

import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, resolve_activation


class NormActivation(EquivariantNonlinearity):
    """Rescale every irrep channel by an activation of its norm plus a learnable bias.

    ``out_c = sigma(|f_c| + b_c) f_c / |f_c|`` for each channel ``c`` (one copy of one irrep). The
    norm is an invariant, so the layer is exactly equivariant for any ``sigma`` and any irreps,
    scalars included (where ``f/|f|`` is the sign). The norm is regularised as
    ``sqrt(|f|^2 + epsilon^2)`` so that the output and its gradient stay finite at ``f = 0``.

    Args:
        irreps_out: any irreps; ``irreps_in = irreps_out``.
        act: ``sigma`` (default ``"silu"``), a name or a callable.
        epsilon: norm regulariser (default ``1e-6``).

    Shapes:
        ``[..., irreps_out.dim] -> [..., irreps_out.dim]``.
    """

    family = "norm"

    def __init__(self, irreps_out: o3.Irreps | str, act: ActivationLike = "silu", epsilon: float = 1e-6) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        if irreps.dim == 0:
            raise ValueError(f"norm nonlinearity: irreps {irreps!r} are empty; it needs at least one channel")
        self.irreps_in = irreps
        self.irreps_out = irreps
        self.exact = True
        self.act = resolve_activation(act, self.family)
        self.epsilon = epsilon
        self.bias = torch.nn.Parameter(torch.zeros(irreps.num_irreps))
        # channel id of every feature component: [irreps.dim] -> [0, irreps.num_irreps)
        channel = torch.cat(
            [torch.arange(mul).repeat_interleave(ir.dim) + offset for (mul, ir), offset in zip(irreps, _offsets(irreps))]
        )
        self.register_buffer("channel", channel, persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., dim] -> [..., dim]``."""
        squared = features.new_zeros(features.shape[:-1] + (self.irreps_in.num_irreps,))
        squared = squared.index_add(-1, self.channel, features * features)
        norm = torch.sqrt(squared + self.epsilon**2)  # [..., num_irreps]
        scale = self.act(norm + self.bias) / norm
        return features * scale[..., self.channel]


def _offsets(irreps: o3.Irreps) -> list[int]:
    """First channel index of each ``(mul, ir)`` entry."""
    offsets, total = [], 0
    for mul, _ in irreps:
        offsets.append(total)
        total += mul
    return offsets
