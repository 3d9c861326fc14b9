"""Energy and forces of a potential are continuous along a path, for every nonlinearity family.

One atom of a three-atom molecule moves outwards until it has left the cutoff sphere of both
other atoms. With every parameter moved off its initial value (biases included, so that a layer
which is only smooth for zero biases shows it), the energy must have a bounded slope between
consecutive points of a fine path, the forces must match ``-dE/dx`` by central differences, and
they must themselves change by a bounded amount per step.
"""

from __future__ import annotations

import pytest
import torch

from molequi.models import EquivariantPotential
from molequi.nn import nonlinearities

R_MAX = 4.0
#: Path of the third atom: ``start + t * direction`` for ``t`` in ``[T_START, T_STOP]`` (Å).
START = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], dtype=torch.float64)
DIRECTION = torch.nn.functional.normalize(torch.tensor([-0.3, 0.9, 0.3], dtype=torch.float64), dim=0)
T_START, T_STOP, NUM_POINTS = 2.4, 3.4, 1001
#: Bounds for a small molecule with unit-scale weights: |dE/dx| (eV/Å) and |dF/dx| (eV/Å^2).
#: Smooth layers stay two orders of magnitude below them on this path; a jump of the energy or
#: of the forces within one step exceeds them.
MAX_SLOPE, MAX_CURVATURE = 5.0, 50.0
#: Central differences at the path's step (1e-3 Å) are accurate to ``h^2 |E'''| / 6``, far below this (eV/Å).
FORCE_TOLERANCE = 1e-4


def _perturbed_potential(name: str, seed: int) -> EquivariantPotential:
    hidden = "8x0e" if name == "scalar" else "8x0e+8x1o+8x2e"
    torch.manual_seed(seed)
    model = EquivariantPotential(["H", "O"], r_max=R_MAX, num_layers=2, hidden_irreps=hidden, lmax=2, nonlinearity=name)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return model


def _path_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``t [P]`` and one batch of the ``P`` molecules along the path."""
    t = torch.linspace(T_START, T_STOP, NUM_POINTS)
    pos = START.repeat(NUM_POINTS, 1, 1)  # [P, 3, 3]
    pos[:, 2] += t[:, None] * DIRECTION
    batch = torch.arange(NUM_POINTS).repeat_interleave(3)
    return t, {"z": torch.tensor([8, 1, 1]).repeat(NUM_POINTS), "pos": pos.reshape(-1, 3), "batch": batch}


def test_path_crosses_the_cutoff_of_both_neighbours(float64):
    t, data = _path_batch()
    distances = torch.cdist(data["pos"].reshape(-1, 3, 3)[:, 2:], START[:2])[:, 0]  # [P, 2]
    assert (distances[0] < R_MAX).all() and (distances[-1] > R_MAX).all()


@pytest.mark.filterwarnings("ignore:InteractionBlock. the fourier nonlinearity")
@pytest.mark.parametrize("name", sorted(nonlinearities.FAMILIES))
def test_energy_and_forces_are_continuous_through_the_cutoff(name, float64):
    model = _perturbed_potential(name, seed=0)
    t, data = _path_batch()
    out = model(data)
    energy = out["energy"].detach()  # [P]
    forces = out["forces"].detach().reshape(NUM_POINTS, 3, 3)  # [P, atom, xyz]
    step = (t[1] - t[0]).item()

    slope = (energy[1:] - energy[:-1]).abs().max().item() / step
    curvature = (forces[1:] - forces[:-1]).abs().max().item() / step
    finite_difference = -(energy[2:] - energy[:-2]) / (2 * step)  # -dE/dt at the interior points
    force_error = (forces[1:-1, 2] @ DIRECTION - finite_difference).abs().max().item()
    print(f"{name}: max |dE/dx| {slope:.2e} eV/Å, max |dF/dx| {curvature:.2e} eV/Å^2, force error {force_error:.1e}")
    assert slope <= MAX_SLOPE
    assert curvature <= MAX_CURVATURE
    assert force_error <= FORCE_TOLERANCE
