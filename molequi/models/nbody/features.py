"""Per-level helpers of the N-body network: soft normalisation, invariants and the invariant readout."""

from __future__ import annotations

import torch
from e3nn import o3

from ...nn.readout import ScalarReadout

_SCALAR = o3.Irrep("0e")


class SoftNorm(torch.nn.Module):
    r"""Soft RMS normalisation of each irrep block ``b``.

    .. math::
        x_b \mapsto x_b \sqrt{(1 + \epsilon) / (\epsilon + \langle x_b^2 \rangle)}

    :math:`\langle x_b^2 \rangle` is the mean square over the channels and components of one block
    ``mul x ir`` of one row, an O(3) invariant, so the map is exactly equivariant. It is smooth
    (also at ``x = 0``), its gain lies in ``(0, sqrt(1 + 1 / epsilon)]``, and it maps the mean square
    ``v`` of a block to ``(1 + epsilon) v / (epsilon + v)``: below ``1 + epsilon`` whatever the input,
    with the stable fixed point 1. Repeated through levels it keeps every block near unit RMS
    however much the Clebsch-Gordan products before it amplify or shrink; ``epsilon -> 0`` is an
    equivariant RMS layer norm, a larger ``epsilon`` amplifies small (near-symmetric) blocks less.

    Shapes:
        ``[..., irreps.dim] -> [..., irreps.dim]``.
    """

    def __init__(self, irreps: o3.Irreps | str, epsilon: float = 0.1) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.epsilon = float(epsilon)
        average = torch.zeros(self.irreps_in.dim, len(self.irreps_in))
        for block, sl in enumerate(self.irreps_in.slices()):
            average[sl, block] = 1.0 / (sl.stop - sl.start)
        self.register_buffer("average", average, persistent=False)
        self.register_buffer("expand", (average > 0).T.to(average.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps.dim] -> [..., irreps.dim]``."""
        gain = torch.sqrt((1.0 + self.epsilon) / (self.epsilon + x.pow(2) @ self.average))  # [..., num_blocks]
        return x * (gain @ self.expand)


class Invariants(torch.nn.Module):
    """O(3) invariants of equivariant features: even scalars as they are, the mean square of every other irrep.

    Shapes:
        ``[..., irreps_in.dim] -> [..., irreps_in.num_irreps]`` (irreps_out ``num_irreps x 0e``).
    """

    def __init__(self, irreps_in: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(f"{self.irreps_in.num_irreps}x0e")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., irreps_in.dim] -> [..., num_irreps]``."""
        parts = []
        for (mul, ir), sl in zip(self.irreps_in, self.irreps_in.slices()):
            block = x[..., sl]
            if ir == _SCALAR:
                parts.append(block)
            else:
                parts.append(block.reshape(*x.shape[:-1], mul, ir.dim).pow(2).mean(-1))
        return torch.cat(parts, dim=-1)


class LevelReadout(torch.nn.Module):
    """Invariant readout of one level: :class:`Invariants` then :class:`~molequi.nn.readout.ScalarReadout`.

    Shapes:
        ``[M, irreps_in.dim] -> [M]`` (one energy contribution per atom, fragment or molecule).
    """

    def __init__(self, irreps_in: o3.Irreps | str, hidden: int = 16) -> None:
        super().__init__()
        self.invariants = Invariants(irreps_in)
        self.readout = ScalarReadout(self.invariants.irreps_out, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [M, irreps_in.dim] -> [M]``."""
        return self.readout(self.invariants(x))[:, 0]
