"""Write the reference model files and outputs that ``test_reference_outputs.py`` checks.

Run once, on a known-good state of the code, from the repository root::

    .venv/bin/python tests/models/make_reference_outputs.py

It builds, with fixed seeds in float64, a small :class:`~molequi.models.EquivariantPotential`
(gate) and a small :class:`~molequi.models.NBodyNetwork` (``hierarchy=True``), moves every
parameter off its initial value (so that no layer is trivially zero), saves them with
:func:`molequi.models.save_model` into ``tests/models/reference/`` and stores their energies
and forces on two fixed molecules in ``tests/models/reference/outputs.json``. Refactors that
must not change any number keep ``test_reference_outputs.py`` green against these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from ase.build import molecule

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential, NBodyNetwork, save_model

REFERENCE = Path(__file__).resolve().parent / "reference"
#: The fixed molecules (ase.build names) and the rattle seed applied to each.
MOLECULES = {"CH3CH2OH": 0, "CH3COOH": 1}
SPECIES = ["H", "C", "O"]


def structure(name: str) -> dict[str, torch.Tensor]:
    """``{"z": [N], "pos": [N, 3]}`` (float64) of molecule ``name``, rattled by its fixed seed."""
    atoms = molecule(name)
    atoms.rattle(0.05, seed=MOLECULES[name])
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=torch.float64)}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Add seeded noise of relative size 0.3 to every parameter (no zero-initialised layer stays zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(0.3 * noise * (parameter.abs().mean() + 0.1))


def build_models() -> dict[str, torch.nn.Module]:
    """The two reference models, float64, seeded and perturbed."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        potential = EquivariantPotential(
            SPECIES,
            r_max=3.0,
            num_layers=2,
            hidden_irreps="8x0e+4x1o+4x2e",
            nonlinearity="gate",
            num_radial=6,
            radial_hidden=(16,),
            readout_hidden=8,
            avg_num_neighbors=4.0,
            atomic_energies={1: -0.5, 6: -1.5, 8: -1.0},
            scale={1: 0.7, 6: 1.3, 8: 0.9},
            shift={1: 0.1, 6: -0.2, 8: 0.05},
        )
        _perturb(potential, 1)
        torch.manual_seed(0)
        nbody = NBodyNetwork(
            SPECIES,
            r_max=3.0,
            num_levels=2,
            hidden_irreps="4x0e+4x1o+4x2e",
            edge_channels=4,
            hierarchy=True,
            num_radial=4,
            radial_hidden=(8,),
            readout_hidden=8,
            avg_num_neighbors=4.0,
            atomic_energies={1: -0.5, 6: -1.5, 8: -1.0},
            scale=1.1,
            shift=-0.3,
        )
        _perturb(nbody, 2)
    return {"potential_gate": potential.eval(), "nbody_hierarchy": nbody.eval()}


def outputs(model: torch.nn.Module) -> dict[str, Any]:
    """Energy and forces of ``model`` on every reference molecule, as nested lists."""
    result = {}
    for name in MOLECULES:
        out = model(structure(name))
        result[name] = {"energy": out["energy"].detach().tolist(), "forces": out["forces"].detach().tolist()}
    return result


def main() -> None:
    REFERENCE.mkdir(exist_ok=True)
    torch.set_num_threads(1)
    record = {}
    for name, model in build_models().items():
        save_model(model, REFERENCE / f"{name}.pt")
        record[name] = outputs(model)
    (REFERENCE / "outputs.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
