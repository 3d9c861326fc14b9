"""Gated nonlinearity ``sigma(g) f`` with gate scalars predicted by the layer before (3D Steerable CNNs)."""

from __future__ import annotations

import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, normalized_activation
from .scalar import ScalarActivation


class GateActivation(EquivariantNonlinearity):
    """Scalars through an element-wise activation, every ``l > 0`` channel times a gated scalar.

    The input is ``irreps_out`` (in its own order, nothing is sorted) followed by one even gate
    scalar per ``l > 0`` channel: ``irreps_in = irreps_out + G x 0e`` with ``G`` the number of gated
    channels. A gate ``g`` is an invariant, so ``act_gates(g) f`` is exactly equivariant.

    Args:
        irreps_out: any irreps, e.g. ``"32x0e+16x1o+8x2e"``.
        act: activation of even scalars (default ``"silu"``).
        act_odd: activation of odd scalars (default ``"tanh"``).
        act_gates: activation of the gates (default ``"sigmoid"``).

    Shapes:
        ``[..., irreps_out.dim + G] -> [..., irreps_out.dim]``.
    """

    family = "gate"

    def __init__(
        self,
        irreps_out: o3.Irreps | str,
        act: ActivationLike = "silu",
        act_odd: ActivationLike = "tanh",
        act_gates: ActivationLike = "sigmoid",
    ) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        if irreps.dim == 0:
            raise ValueError(f"gate nonlinearity: irreps {irreps!r} are empty; it needs at least one channel")
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
        num_gates = sum(mul for mul, ir in irreps if ir.l > 0)
        self.scalar_act = ScalarActivation(scalars, act=act, act_odd=act_odd) if scalars.dim else None
        self.act_gates = normalized_activation(act_gates, self.family)
        self.irreps_in = irreps + o3.Irreps(f"{num_gates}x0e") if num_gates else irreps
        scalars_out = iter(self.scalar_act.irreps_out if self.scalar_act is not None else [])
        self.irreps_out = o3.Irreps([next(scalars_out) if ir.l == 0 else (mul, ir) for mul, ir in irreps])
        self.exact = True
        self._irreps = irreps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., irreps_in.dim] -> [..., irreps_out.dim]``."""
        dim = self._irreps.dim
        fields, gates = features[..., :dim], self.act_gates(features[..., dim:])
        scalar_parts = [fields[..., sl] for sl, (_, ir) in zip(self._irreps.slices(), self._irreps) if ir.l == 0]
        scalars = self.scalar_act(torch.cat(scalar_parts, dim=-1)) if scalar_parts else None
        pieces, scalar_offset, gate_offset = [], 0, 0
        for sl, (mul, ir) in zip(self._irreps.slices(), self._irreps):
            if ir.l == 0:
                pieces.append(scalars[..., scalar_offset : scalar_offset + mul])
                scalar_offset += mul
            else:
                field = fields[..., sl].unflatten(-1, (mul, ir.dim))
                gate = gates[..., gate_offset : gate_offset + mul, None]
                pieces.append((field * gate).flatten(-2))
                gate_offset += mul
        return torch.cat(pieces, dim=-1)
