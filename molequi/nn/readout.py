"""Per-node invariant readout: the scalars of equivariant features through a small MLP."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import normalize2mom


class ScalarReadout(torch.nn.Module):
    """``[N, irreps_in.dim] -> [N, num_outputs]``: linear to ``hidden x 0e``, SiLU, linear to ``num_outputs x 0e``.

    e3nn's ``o3.Linear`` only connects equal irreps, so only the even scalars of the input reach
    the output: the readout is invariant under O(3).
    """

    def __init__(self, irreps_in: o3.Irreps | str, hidden: int = 16, num_outputs: int = 1) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        if not any(ir == o3.Irrep("0e") for _, ir in self.irreps_in):
            raise ValueError(f"ScalarReadout: irreps_in {self.irreps_in} has no even scalars (0e) to read out")
        self.linear_1 = o3.Linear(self.irreps_in, o3.Irreps(f"{hidden}x0e"))
        self.act = normalize2mom(torch.nn.functional.silu)
        self.linear_2 = o3.Linear(o3.Irreps(f"{hidden}x0e"), o3.Irreps(f"{num_outputs}x0e"))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [N, irreps_in.dim] -> [N, num_outputs]``."""
        return self.linear_2(self.act(self.linear_1(features)))
