"""Error metrics accumulated over batches (and processes): MAE and RMSE of energy, energy per atom, forces,
stress, dipole norm and an intensive molecular target.

Units are those of the data: eV, eV/atom, eV/A, eV/A^3, Debye (the dipole norm, QM9's ``mu``) and
the intensive target's (eV for a QM9 gap). Force errors are over Cartesian components, the
convention of the MD17 literature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..data import keys
from .loss import DIPOLE_NORM, INTENSIVE, atoms_per_graph, available, dipole_norm

#: Quantities tracked, in the order of the accumulator's rows.
QUANTITIES = ("energy", "energy_per_atom", "forces", "stress", DIPOLE_NORM, INTENSIVE)


class MetricAccumulator:
    """Sums of absolute errors, squared errors and counts, reducible across processes.

    The sums live in one ``[len(QUANTITIES), 3]`` float64 tensor (abs, square, count) so that a
    single all-reduce combines them.
    """

    def __init__(self) -> None:
        self.sums = torch.zeros(len(QUANTITIES), 3, dtype=torch.float64)

    @torch.no_grad()
    def update(self, pred: Mapping[str, torch.Tensor], batch: Any) -> None:
        """Add the errors of one batch; quantities missing from ``pred`` or ``batch`` are skipped.

        Args:
            pred: model output (``energy [G]``, ``forces [N, 3]``, ``stress [G, 3, 3]``, ``dipole [G, 3]``,
                ``intensive [G]``).
            batch: PyG batch with the references.
        """
        for row, diff in enumerate(errors(pred, batch).values()):  # in the order of QUANTITIES
            if diff is not None:
                diff = diff.detach().double()
                self.sums = self.sums.to(diff.device)  # the sums stay where the errors are: no copy to the host per step
                self.sums[row, 0] += diff.abs().sum()
                self.sums[row, 1] += diff.square().sum()
                self.sums[row, 2] += diff.numel()

    def reduce(self, sum_over_processes: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the sums by their totals over processes."""
        self.sums = sum_over_processes(self.sums)

    def compute(self) -> dict[str, float]:
        """``{<quantity>_mae, <quantity>_rmse, <quantity>_mse}`` for each quantity seen."""
        out = {}
        for name, (abs_sum, sq_sum, count) in zip(QUANTITIES, self.sums.tolist()):
            if count > 0:
                out[f"{name}_mae"] = abs_sum / count
                out[f"{name}_rmse"] = (sq_sum / count) ** 0.5
                out[f"{name}_mse"] = sq_sum / count
        return out


def errors(pred: Mapping[str, torch.Tensor], batch: Any) -> dict[str, torch.Tensor | None]:
    """Prediction minus reference for each of :data:`QUANTITIES` (None where either is missing).

    Placeholder targets (``has_<target>`` False, see :mod:`molequi.data.keys`) are left out: the
    graphs without a real energy or stress, the atoms of the graphs without real forces.

    Returns:
        ``energy [G']``, ``energy_per_atom [G']``, ``forces [N', 3]``, ``stress [G'', 3, 3]``,
        ``dipole_norm [G]`` (Debye, from the model's ``dipole``) and ``intensive [G]`` over the real targets.
    """

    def has(key: str) -> bool:
        return key in pred and key in batch

    def real(diff: torch.Tensor, key: str, per_atom: bool = False) -> torch.Tensor:
        flags = available(batch, key, batch.num_graphs)
        if flags is None:
            return diff
        return diff[flags[batch[keys.BATCH]] if per_atom else flags]

    out: dict[str, torch.Tensor | None] = dict.fromkeys(QUANTITIES)
    if has(keys.ENERGY):
        energy = pred[keys.ENERGY] - batch[keys.ENERGY]
        out["energy"] = real(energy, keys.ENERGY)
        out["energy_per_atom"] = real(energy / atoms_per_graph(batch, energy.shape[0]).to(energy.dtype), keys.ENERGY)
    if has(keys.FORCES):
        out["forces"] = real(pred[keys.FORCES] - batch[keys.FORCES], keys.FORCES, per_atom=True)
    if has(keys.STRESS):
        out["stress"] = real(pred[keys.STRESS] - batch[keys.STRESS].reshape(-1, 3, 3), keys.STRESS)
    if "dipole" in pred and DIPOLE_NORM in batch:
        out[DIPOLE_NORM] = real(dipole_norm(pred) - batch[DIPOLE_NORM].to(torch.float64).reshape(-1), DIPOLE_NORM)
    if has(INTENSIVE):
        out[INTENSIVE] = real(pred[INTENSIVE].to(torch.float64) - batch[INTENSIVE].to(torch.float64).reshape(-1), INTENSIVE)
    return out
