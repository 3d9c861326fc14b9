"""Physics checks of energy models: O(3)/translation/permutation symmetry and finite-difference derivatives.

Models follow :class:`molequi.models.AtomisticModel`'s contract: ``model(data, compute_forces,
compute_stress) -> {"energy": [G], "forces": [N, 3], "stress": [G, 3, 3]}``. Inputs here are single
structures as dicts ``{"z": [N], "pos": [N, 3]}`` plus, for periodic ones, ``"cell": [1, 3, 3]`` and
``"pbc": [1, 3]``; edges are left to the model so that every transformed copy builds its own. Every
tensor the checks build (rotations, shifts, permutations, strains) is on the structure's device, so
a structure on a GPU is checked on the GPU (random draws come from ``generator`` on the CPU).
"""

from __future__ import annotations

from typing import Callable

import torch

from .equivariance import random_o3

Structure = dict[str, torch.Tensor]


def _evaluate(model: Callable, structure: Structure, stress: bool) -> dict[str, torch.Tensor]:
    out = model(dict(structure), compute_forces=True, compute_stress=stress)
    return {key: out[key].detach() for key in ("energy", "forces", "stress") if key in out}


def model_equivariance_errors(
    model: Callable, structure: Structure, num_transformations: int = 4, generator: torch.Generator | None = None
) -> dict[str, float]:
    """Max absolute errors of energy (invariant), forces and stress (covariant) under symmetry.

    Returns ``{"o3": ..., "translation": ..., "permutation": ...}``; each is the largest error over
    energy, forces and (for periodic structures) stress. O(3) elements include reflections.
    """
    periodic = "cell" in structure and bool(structure.get("pbc", torch.zeros(1)).any())
    reference = _evaluate(model, structure, periodic)
    pos = structure["pos"]

    def error(out: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
        return max((out[key] - expected[key]).abs().max().item() for key in expected)

    o3_error = 0.0
    for matrix in random_o3(num_transformations, pos.dtype, generator).to(pos.device):
        moved = dict(structure, pos=pos @ matrix.T)
        if "cell" in structure:
            moved["cell"] = structure["cell"] @ matrix.T
        expected = {"energy": reference["energy"], "forces": reference["forces"] @ matrix.T}
        if periodic:
            expected["stress"] = matrix @ reference["stress"] @ matrix.T
        o3_error = max(o3_error, error(_evaluate(model, moved, periodic), expected))

    shift = 3.0 * torch.randn(1, 3, dtype=pos.dtype, generator=generator).to(pos.device)
    translation_error = error(_evaluate(model, dict(structure, pos=pos + shift), periodic), reference)

    perm = torch.randperm(pos.shape[0], generator=generator).to(pos.device)
    permuted = dict(structure, pos=pos[perm], z=structure["z"][perm])
    expected = dict(reference, forces=reference["forces"][perm])
    permutation_error = error(_evaluate(model, permuted, periodic), expected)
    return {"o3": o3_error, "translation": translation_error, "permutation": permutation_error}


def finite_difference_force_error(model: Callable, structure: Structure, delta: float = 1e-5) -> float:
    """Max ``|F - F_fd|`` with ``F_fd`` from central differences of the energy (step ``delta`` Å)."""
    forces = _evaluate(model, structure, False)["forces"]
    pos = structure["pos"]
    numeric = torch.zeros_like(pos)
    for atom in range(pos.shape[0]):
        for axis in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = pos.clone()
                moved[atom, axis] += sign * delta
                energies.append(model(dict(structure, pos=moved), compute_forces=False)["energy"].sum().item())
            numeric[atom, axis] = -(energies[0] - energies[1]) / (2 * delta)
    return (forces - numeric).abs().max().item()


def finite_difference_stress_error(model: Callable, structure: Structure, delta: float = 1e-5) -> float:
    """Max ``|sigma - sigma_fd|``, ``sigma_fd = (1/V) dE/d(strain)`` by central differences of a symmetric strain."""
    stress = _evaluate(model, structure, True)["stress"][0]
    pos, cell = structure["pos"], structure["cell"].reshape(3, 3)
    volume = torch.linalg.det(cell).abs().item()
    numeric = torch.zeros(3, 3, dtype=pos.dtype, device=pos.device)
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = torch.zeros(3, 3, dtype=pos.dtype, device=pos.device)
                strain[a, b] += sign * delta / 2
                strain[b, a] += sign * delta / 2
                deform = torch.eye(3, dtype=pos.dtype, device=pos.device) + strain
                moved = dict(structure, pos=pos @ deform, cell=(cell @ deform)[None])
                energies.append(model(moved, compute_forces=False)["energy"].sum().item())
            numeric[a, b] = (energies[0] - energies[1]) / (2 * delta) / volume
    return (stress - numeric).abs().max().item()
