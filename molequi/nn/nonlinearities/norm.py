"""Norm nonlinearity ``sigma(n + b) f / n`` with a smoothed norm ``n`` per irrep channel (Harmonic Networks)."""

from __future__ import annotations

import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, resolve_activation


class NormActivation(EquivariantNonlinearity):
    """Rescale every irrep channel by an activation of its smoothed norm plus a learnable bias.

    For each channel ``c`` (one copy of one irrep)::

        out_c = sigma(n_c + b_c) f_c / n_c,   n_c = sqrt(|f_c|^2 + epsilon^2).

    For ``|f_c| >> epsilon`` this is Harmonic Networks' ``sigma(|f_c| + b_c) f_c / |f_c|``: the
    direction is kept and the magnitude is ``sigma`` of the norm. That form itself is not
    continuous at ``f_c = 0`` once ``sigma(b_c) != 0`` (its size tends to ``sigma(b_c)``), which a
    potential meets wherever a channel passes through zero, e.g. where messages vanish at the
    cutoff. Here the output is ``g(|f_c|^2) f_c`` with ``g(s) = sigma(sqrt(s + epsilon^2) + b_c) /
    sqrt(s + epsilon^2)`` as smooth as ``sigma`` for all ``s >= 0``: it vanishes at ``f_c = 0``
    with Jacobian ``sigma(epsilon + b_c) / epsilon * I``. ``epsilon`` is the scale below which the
    layer is linear; the default 1 is that of unit-variance features (smaller values approach the
    discontinuous form, with gradients up to ``1 / epsilon``). The norm is an invariant, so the
    layer is exactly O(3)-equivariant for any ``sigma`` and any irreps, scalars included.

    Args:
        irreps_out: any irreps; ``irreps_in = irreps_out``.
        act: ``sigma`` (default ``"silu"``), a name or a callable.
        epsilon: smoothing scale of the norm (default 1.0, must be positive).

    Shapes:
        ``[..., irreps_out.dim] -> [..., irreps_out.dim]``.
    """

    family = "norm"

    def __init__(self, irreps_out: o3.Irreps | str, act: ActivationLike = "silu", epsilon: float = 1.0) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        if irreps.dim == 0:
            raise ValueError(f"norm nonlinearity: irreps {irreps!r} are empty; it needs at least one channel")
        if not epsilon > 0:
            raise ValueError(f"norm nonlinearity: epsilon={epsilon!r} must be positive (the smoothing scale of the norm)")
        self.irreps_in = irreps
        self.irreps_out = irreps
        self.exact = True
        self.act = resolve_activation(act, self.family)
        self.epsilon = float(epsilon)
        self.bias = torch.nn.Parameter(torch.zeros(irreps.num_irreps))
        # channel id of every feature component: [irreps.dim] -> [0, irreps.num_irreps)
        channel = torch.cat(
            [torch.arange(mul).repeat_interleave(ir.dim) + offset for (mul, ir), offset in zip(irreps, _offsets(irreps))]
        )
        self.register_buffer("channel", channel, persistent=False)

    def reset_parameters(self) -> None:
        """Biases back to their initial value, zero."""
        torch.nn.init.zeros_(self.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., dim] -> [..., dim]``."""
        squared = features.new_zeros(features.shape[:-1] + (self.irreps_in.num_irreps,))
        squared = squared.index_add(-1, self.channel, features * features)  # [..., num_irreps]
        norm = torch.sqrt(squared + self.epsilon**2)
        scale = self.act(norm + self.bias) / norm
        return features * scale[..., self.channel]


def _offsets(irreps: o3.Irreps) -> list[int]:
    """First channel index of each ``(mul, ir)`` entry."""
    offsets, total = [], 0
    for mul, _ in irreps:
        offsets.append(total)
        total += mul
    return offsets
