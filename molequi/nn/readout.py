"""Per-node invariant readout: the scalars of equivariant features through a small MLP."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import normalize2mom

from .init import reset_children


class ScalarReadout(torch.nn.Module):
    """``[N, irreps_in.dim] -> [N, num_outputs]``: linear to ``hidden x 0e``, SiLU, linear to ``num_outputs x 0e``.

    e3nn's ``o3.Linear`` only connects equal irreps, so only the even scalars of the input reach
    the output: the readout is invariant under O(3).

    Attributes:
        irreps_in: the node features read.
        irreps_out: ``num_outputs x 0e``.
    """

    def __init__(self, irreps_in: o3.Irreps | str, hidden: int = 16, num_outputs: int = 1) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if not any(ir == o3.Irrep("0e") for _, ir in self.irreps_in):
            raise ValueError(f"ScalarReadout: irreps_in {self.irreps_in} has no even scalars (0e) to read out")
        self.linear_1 = o3.Linear(self.irreps_in, o3.Irreps(f"{hidden}x0e"))
        self.act = normalize2mom(torch.nn.functional.silu)
        self.irreps_out = o3.Irreps(f"{num_outputs}x0e")
        self.linear_2 = o3.Linear(o3.Irreps(f"{hidden}x0e"), self.irreps_out)

    def reset_parameters(self) -> None:
        """Re-draw both linear maps' weights as at construction."""
        reset_children(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [N, irreps_in.dim] -> [N, num_outputs]``."""
        return self.linear_2(self.act(self.linear_1(features)))


class DipoleReadout(torch.nn.Module):
    """Molecular dipole ``mu_G = sum_i q_i (r_i - c_G) + p_i`` from per-atom charges and dipoles (PaiNN).

    ``q_i`` (a 0e output, made neutral per graph) and ``p_i`` (a 1o output) are linear in the
    node features; neutral charges make ``mu`` translation invariant, and it rotates (and
    reflects) as a polar vector.

    Attributes:
        irreps_in: the node features read (they must contain ``1o``).
        irreps_out: ``1x1o``, the molecular dipole.

    Shapes:
        ``features [N, irreps_in.dim], pos [N, 3], batch [N] -> [G, 3]``.
    """

    def __init__(self, irreps_in: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if not any(ir == o3.Irrep("1o") for _, ir in self.irreps_in):
            raise ValueError(f"DipoleReadout: irreps_in {self.irreps_in} has no vectors (1o) for atomic dipoles")
        self.irreps_out = o3.Irreps("1x1o")
        self.linear = o3.Linear(self.irreps_in, o3.Irreps("1x0e+1x1o"))

    def reset_parameters(self) -> None:
        """Re-draw the weights of the per-atom charge and dipole map as at construction."""
        reset_children(self)

    def forward(self, features: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``[N, irreps_in.dim], [N, 3], [N], G -> [G, 3]``."""
        out = self.linear(features)
        charge, atomic_dipole = out[:, 0], out[:, 1:4]  # [N], [N, 3]
        count = torch.zeros(num_graphs, dtype=pos.dtype, device=pos.device).index_add(0, batch, torch.ones_like(charge))
        mean_charge = torch.zeros_like(count).index_add(0, batch, charge) / count
        neutral = charge - mean_charge[batch]
        terms = neutral[:, None] * pos + atomic_dipole
        return torch.zeros(num_graphs, 3, dtype=pos.dtype, device=pos.device).index_add(0, batch, terms)
