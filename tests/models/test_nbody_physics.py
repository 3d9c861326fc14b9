"""NBodyNetwork across structures: additive energies of distant molecules, batching, frozen fragments for MD."""

from __future__ import annotations

import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph
from molequi.dtypes import default_dtype
from molequi.models.inputs import read_graph_inputs
from molequi.models.nbody import NBodyNetwork
from molequi.nn.edge_embedding import edge_vectors

SMALL = {
    "hidden_irreps": "4x0e+4x1o+4x2e",
    "num_levels": 2,
    "edge_channels": 4,
    "num_radial": 4,
    "radial_hidden": (8,),
    "readout_hidden": 8,
}


@pytest.fixture(scope="module")
def model() -> NBodyNetwork:
    """A small float64 model with the hierarchy and the dipole head, seeded."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        model = NBodyNetwork(["H", "C", "O"], r_max=3.0, dipole=True, **SMALL)
        with torch.no_grad():
            model.atom_down.message_gain.fill_(0.8)  # it starts at 0 (ReZero): open the top-down path
        return model


def _tensors(atoms: Atoms) -> dict[str, torch.Tensor]:
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=torch.float64)}


def _partition(labels: torch.Tensor) -> set[frozenset[int]]:
    return {frozenset(torch.nonzero(labels == label).flatten().tolist()) for label in labels.unique()}


def test_energies_of_distant_molecules_add_up(model, float64):
    """Ethanol and acetic acid 20 A apart: E(A + B) = E(A) + E(B) to rounding, forces likewise."""
    ethanol, acid = molecule("CH3CH2OH"), molecule("CH3COOH")
    ethanol.rattle(0.05, seed=0)
    acid.rattle(0.05, seed=1)
    acid.positions += (20.0, 0.0, 0.0)
    pair, alone = model(_tensors(ethanol + acid)), [model(_tensors(ethanol)), model(_tensors(acid))]
    error = (pair["energy"] - alone[0]["energy"] - alone[1]["energy"]).abs().item()
    assert error < 1e-12, error
    torch.testing.assert_close(pair["forces"], torch.cat([a["forces"] for a in alone]), atol=1e-12, rtol=0)
    inputs = read_graph_inputs(_tensors(ethanol + acid), model.r_max)
    _, hierarchy = model.level_states(inputs, edge_vectors(inputs.pos, inputs.edge_index))
    assert hierarchy.num_molecules == 2


def _batch_of(names: list[str]) -> list:
    graphs = []
    for name in names:
        atoms = molecule(name)
        atoms.rattle(0.05, seed=0)
        graphs.append(atoms_to_graph(atoms, r_max=3.0, dtype=torch.float64))
    return graphs


def test_batch_equals_single_structures_and_fragments_stay_in_their_graph(model, float64):
    graphs = _batch_of(["CH4", "H2O", "H2O", "trans-butane"])  # the two waters occupy the same positions
    batched = model(Batch.from_data_list(graphs))
    singles = [model(g) for g in graphs]
    for key in ("energy", "forces", "dipole"):
        expected = torch.cat([s[key] for s in singles])
        torch.testing.assert_close(batched[key], expected, atol=1e-12, rtol=0)
    offsets = torch.tensor([0, 5, 8, 11]).repeat_interleave(torch.tensor([5, 3, 3, 14]))
    torch.testing.assert_close(batched["fragment_index"], torch.cat([s["fragment_index"] for s in singles]) + offsets)
    given = Batch.from_data_list([g.update({"fragment_index": s["fragment_index"]}) for g, s in zip(graphs, singles)])
    torch.testing.assert_close(model(given)["energy"], batched["energy"], atol=1e-12, rtol=0)


def test_no_gradient_leaks_between_the_graphs_of_a_batch(model, float64):
    """d E_g / d r_i is exactly zero for every atom i of another graph, also for graphs at the same place."""
    batch = Batch.from_data_list(_batch_of(["CH3OH", "CH3OH", "trans-butane"]))
    pos = batch.pos.clone().requires_grad_(True)
    batch.pos = pos
    energy = model(batch, compute_forces=False)["energy"]
    for graph in range(3):
        (gradient,) = torch.autograd.grad(energy[graph], pos, retain_graph=True)
        outside = batch.batch != graph
        assert bool((gradient[outside] == 0).all()), graph
        assert gradient[~outside].abs().max() > 1e-3


def _path(model: NBodyNetwork, z: torch.Tensor, start: torch.Tensor, end: torch.Tensor, points: int, frozen=None):
    """Energies, ``dE/dt`` from the forces and fragment labels at ``points`` along ``start + t (end - start)``."""
    step = end - start
    energies, slopes, labels = [], [], []
    for t in torch.linspace(0.0, 1.0, points, dtype=torch.float64):
        data = {"z": z, "pos": start + t * step}
        if frozen is not None:
            data["fragment_index"] = frozen
        out = model(data)
        energies.append(out["energy"].item())
        slopes.append(-(out["forces"] * step).sum().item())
        labels.append(out["fragment_index"])
    return torch.tensor(energies), torch.tensor(slopes), labels


def _gaps(energy: torch.Tensor, slope: torch.Tensor) -> tuple[float, float]:
    """Largest gap between an energy step and the trapezoid integral of the forces over it, at steps h and 2h.

    On a smooth path the gap is the trapezoid rule's error, O(h^3) per step: it shrinks ~8x from 2h
    to h. A jump of the energy stays whatever the step.
    """

    def gap(e: torch.Tensor, s: torch.Tensor) -> float:
        h = 1.0 / (e.shape[0] - 1)
        return ((e[1:] - e[:-1]) - (s[1:] + s[:-1]) * h / 2).abs().max().item()

    return gap(energy, slope), gap(energy[::2], slope[::2])


def test_energy_is_continuous_along_a_bond_stretch_with_frozen_fragments(model, float64):
    """An MD-like path that stretches methanol's O-H past the bond cutoff (1.26 A), other atoms vibrating.

    Labels computed per frame change where the H leaves its fragment and molecule, and the energy
    jumps there; with the labels of the first frame (as the calculator freezes them) it is smooth.
    """
    methanol = molecule("CH3OH")  # C O H(O) H H H
    start = torch.tensor(methanol.positions, dtype=torch.float64)
    z = torch.tensor(methanol.numbers)
    end = start + 0.04 * torch.randn(start.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    oh = start[2] - start[1]
    end[2] = start[1] + 1.45 * oh  # 0.97 A -> 1.41 A
    frozen = model({"z": z, "pos": start})["fragment_index"]

    energy, slope, labels = _path(model, z, start, end, 21)
    assert len(_partition(labels[0])) == 1 and len(_partition(labels[-1])) == 2
    free, free_coarse = _gaps(energy, slope)
    assert free > 0.5 * free_coarse, (free, free_coarse)  # a jump: the gap does not shrink with the step
    energy, slope, labels = _path(model, z, start, end, 41, frozen)
    assert all(torch.equal(frozen, other) for other in labels)
    smooth, smooth_coarse = _gaps(energy, slope)
    assert smooth < 0.25 * smooth_coarse and smooth < 0.1 * free, (smooth, smooth_coarse, free)


def test_velocity_verlet_with_frozen_fragments_conserves_energy(model, float64):
    """A short NVE trajectory (ASE units, 0.25 fs steps) with the labels of the first frame."""
    from ase import units

    ethanol = molecule("CH3CH2OH")
    z, pos = torch.tensor(ethanol.numbers), torch.tensor(ethanol.positions, dtype=torch.float64)
    mass = torch.tensor(ethanol.get_masses(), dtype=torch.float64)[:, None]
    velocity = 0.02 * torch.randn(pos.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    frozen, dt = model({"z": z, "pos": pos})["fragment_index"], 0.25 * units.fs
    out = model({"z": z, "pos": pos, "fragment_index": frozen})
    totals = []
    for _ in range(40):
        velocity = velocity + 0.5 * dt * out["forces"] / mass
        pos = pos + dt * velocity
        out = model({"z": z, "pos": pos, "fragment_index": frozen})
        velocity = velocity + 0.5 * dt * out["forces"] / mass
        totals.append(out["energy"].item() + 0.5 * (mass * velocity.pow(2)).sum().item())
    kinetic = 0.5 * (mass * velocity.pow(2)).sum().item()
    drift = max(totals) - min(totals)
    assert drift < 1e-2 * kinetic, (drift, kinetic)


def test_breaking_a_bond_changes_the_decomposition_unless_fixed(model, float64):
    methanol = _tensors(molecule("CH3OH"))  # C O H(O) H H H
    bonded = model(methanol)["fragment_index"]
    oh = methanol["pos"][2] - methanol["pos"][1]
    broken = dict(methanol, pos=methanol["pos"].index_add(0, torch.tensor([2]), oh[None]))  # O-H doubled
    assert len(_partition(bonded)) == 1 and len(_partition(model(broken)["fragment_index"])) == 2
    fixed = model(dict(broken, fragment_index=bonded))["fragment_index"]
    assert torch.equal(fixed, bonded)
