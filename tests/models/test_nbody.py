"""NBodyNetwork: fragments, equivariance of every level, derivatives, smoothness, batching, model files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ase.build import bulk, molecule
from ase.collections import s22
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph, neighbor_list
from molequi.dtypes import default_dtype
from molequi.models import load_model, save_model
from molequi.models.inputs import read_graph_inputs
from molequi.models.nbody import NBodyNetwork, decompose
from molequi.nn.edge_embedding import edge_vectors
from molequi.testing import (
    finite_difference_force_error,
    graph_layer_equivariance_errors,
    model_equivariance_errors,
    random_o3,
)
from molequi.training.config import load_config

REPOSITORY = Path(__file__).resolve().parents[2]

SMALL = {
    "hidden_irreps": "4x0e+4x1o+4x2e",
    "num_levels": 2,
    "edge_channels": 4,
    "num_radial": 4,
    "radial_hidden": (8,),
    "readout_hidden": 8,
}
SPECIES = ["H", "C", "O"]


def _build(**options) -> NBodyNetwork:
    """A small float64 model, seeded (building one takes about 2 s of CPU, so tests share them)."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        return NBodyNetwork(options.pop("species", SPECIES), r_max=options.pop("r_max", 3.0), **(SMALL | options))


@pytest.fixture(scope="module")
def model() -> NBodyNetwork:
    """The default model (hierarchy, tensor-product square) with the dipole head."""
    return _build(dipole=True)


def _structure(name: str = "CH3CH2OH", seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    atoms = molecule(name)
    atoms.rattle(0.05, seed=seed)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def _partition(labels: torch.Tensor) -> set[frozenset[int]]:
    return {frozenset(torch.nonzero(labels == label).flatten().tolist()) for label in labels.unique()}


def test_fragments_are_heavy_atoms_with_their_hydrogens_for_any_atom_order():
    ethanol = _structure()  # C C O H H H H H H
    labels = decompose(ethanol["z"], ethanol["pos"])
    assert _partition(labels) == {frozenset({0, 6, 7, 8}), frozenset({1, 4, 5}), frozenset({2, 3})}
    assert labels.tolist() == [0, 1, 2, 2, 1, 1, 0, 0, 0]  # smallest atom index of each fragment
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    permuted = decompose(ethanol["z"][perm], ethanol["pos"][perm])
    assert {frozenset(perm[sorted(f)].tolist()) for f in _partition(permuted)} == _partition(labels)
    assert len(_partition(decompose(*_structure("CO2").values()))) == 3  # heavy-heavy bonds are cut
    dimer = s22["Water_dimer"]  # the hydrogen bond O...H (1.9 A) is no covalent bond
    assert len(_partition(decompose(torch.tensor(dimer.numbers), torch.tensor(dimer.positions)))) == 2


def test_every_level_is_equivariant(model, float64):
    structure = _structure()
    edge_index, _ = neighbor_list(structure["pos"], model.r_max)

    def level(name):
        def layer(x, pos, edge_index, z):
            inputs = read_graph_inputs({"z": z, "pos": pos, "edge_index": edge_index}, model.r_max)
            states, hierarchy = model.level_states(inputs, edge_vectors(pos, edge_index))
            state = states[name]
            if name.startswith("edge"):  # per edge -> summed over each atom's incoming edges
                return state.new_zeros(z.shape[0], state.shape[1]).index_add(0, edge_index[1], state)
            if name == "fragment":
                return state[hierarchy.fragment_index]
            if name == "molecule":
                return state[inputs.batch]
            return state

        return layer

    assert set(model.level_irreps) == {"edge_1", "edge_2", "atom_1", "atom_2", "fragment", "molecule"}
    for name, irreps in model.level_irreps.items():
        errors = graph_layer_equivariance_errors(
            level(name),
            torch.zeros(9, 1),
            structure["pos"],
            edge_index,
            "0e",
            irreps,
            num_transformations=2,
            node_inputs={"z": structure["z"]},
        )
        assert max(errors.values()) < 1e-10, (name, errors)


@pytest.mark.parametrize(
    "options", [None, {"hierarchy": False}, {"nonlinearity": "gate"}], ids=["hierarchy", "flat", "gate"]
)
def test_model_is_equivariant(model, options, float64):
    model = model if options is None else _build(**options)
    errors = model_equivariance_errors(model, _structure(), num_transformations=2)
    assert max(errors.values()) < 1e-10, errors


def test_forces_match_finite_differences(model, float64):
    assert finite_difference_force_error(model, _structure("CH3OH")) < 1e-7


def test_energy_is_smooth_along_a_path_and_the_decomposition_is_fixed(model, float64):
    """A straight path with thermal-size displacements (no bond breaks): energies lie on a smooth curve."""
    start = _structure()
    step = 0.05 * torch.randn(start["pos"].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    times = torch.linspace(-1.0, 1.0, 17, dtype=torch.float64)
    energies, slopes, labels = [], [], []
    for t in times:
        out = model(dict(start, pos=start["pos"] + t * step))
        energies.append(out["energy"].item())
        slopes.append(-(out["forces"] * step).sum().item())  # dE/dt
        labels.append(out["fragment_index"])
    assert all(torch.equal(labels[0], other) for other in labels)
    energy, slope, h = torch.tensor(energies), torch.tensor(slopes), (times[1] - times[0]).item()
    # the forces integrate to the energy differences (trapezoid rule): no jumps
    integral = torch.cat([torch.zeros(1), torch.cumsum((slope[1:] + slope[:-1]) * h / 2, 0)])
    assert (energy - energy[0] - integral).abs().max() < 1e-2 * (energy.max() - energy.min())
    # curvature from second differences agrees at steps h and 2h (a jump J would give J / h^2 vs J / 4h^2)
    fine = (energy[3:-1:2] - 2 * energy[2:-2:2] + energy[1:-3:2]) / h**2
    coarse = (energy[4::2] - 2 * energy[2:-2:2] + energy[:-4:2]) / (2 * h) ** 2
    assert (fine - coarse).abs().max() < 0.1 * fine.abs().max(), (fine, coarse)


def test_breaking_a_bond_changes_the_decomposition_unless_fixed(model, float64):
    methanol = _structure("CH3OH")  # C O H(O) H H H
    bonded = model(methanol)["fragment_index"]
    oh = methanol["pos"][3] - methanol["pos"][1]
    broken = dict(methanol, pos=methanol["pos"].index_add(0, torch.tensor([3]), oh[None]))  # O-H doubled
    assert len(_partition(bonded)) == 2 and len(_partition(model(broken)["fragment_index"])) == 3
    fixed = model(dict(broken, fragment_index=bonded))["fragment_index"]
    assert torch.equal(fixed, bonded)


def test_batch_equals_single_structures_and_fragments_stay_in_their_graph(model, float64):
    graphs = []
    for name in ["CH4", "H2O", "H2O", "CH3CH2OH"]:  # the two waters occupy the same positions
        atoms = molecule(name)
        atoms.rattle(0.05, seed=0)
        graphs.append(atoms_to_graph(atoms, r_max=3.0, dtype=torch.float64))
    batched = model(Batch.from_data_list(graphs))
    singles = [model(g) for g in graphs]
    for key in ("energy", "forces", "dipole"):
        expected = torch.cat([s[key] for s in singles])
        torch.testing.assert_close(batched[key], expected, atol=1e-12, rtol=0)
    offsets = torch.tensor([0, 5, 8, 11]).repeat_interleave(torch.tensor([5, 3, 3, 9]))
    torch.testing.assert_close(batched["fragment_index"], torch.cat([s["fragment_index"] for s in singles]) + offsets)
    given = Batch.from_data_list([g.update({"fragment_index": s["fragment_index"]}) for g, s in zip(graphs, singles)])
    torch.testing.assert_close(model(given)["energy"], batched["energy"], atol=1e-12, rtol=0)


def test_activations_stay_bounded_through_depth(float64):
    model = _build(num_levels=5)
    structure = _structure()
    inputs = read_graph_inputs(structure, model.r_max)
    with torch.no_grad():
        states, _ = model.level_states(inputs, edge_vectors(inputs.pos, inputs.edge_index))
    bound = math.sqrt(1.0 + 0.1)  # SoftNorm's ceiling on the RMS of a block
    for name, state in states.items():
        for (_, ir), sl in zip(model.level_irreps[name], model.level_irreps[name].slices()):
            rms = state[:, sl].pow(2).mean(-1).sqrt()  # per row
            assert rms.max() <= bound + 1e-12, (name, ir)
            if name.startswith("atom") and name != "atom_1":
                assert rms.mean() > 0.3, (name, ir, rms.mean())


def test_dipole_head_is_a_translation_invariant_polar_vector(model, float64):
    structure = _structure()
    reference = model(structure, compute_forces=False)["dipole"].detach()
    for matrix in random_o3(2):
        rotated = model(dict(structure, pos=structure["pos"] @ matrix.T), compute_forces=False)["dipole"]
        torch.testing.assert_close(rotated, reference @ matrix.T, atol=1e-10, rtol=0)
    shifted = model(dict(structure, pos=structure["pos"] + 5.0), compute_forces=False)["dipole"]
    torch.testing.assert_close(shifted, reference, atol=1e-10, rtol=0)


def test_periodic_needs_the_flat_form(float64):
    atoms = bulk("NaCl", "rocksalt", a=5.0)
    atoms.rattle(0.1, seed=1)
    crystal = {
        "z": torch.tensor(atoms.numbers),
        "pos": torch.tensor(atoms.positions),
        "cell": torch.tensor(atoms.cell[:])[None],
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }
    flat = _build(species=["Na", "Cl"], r_max=3.5, hierarchy=False)
    errors = model_equivariance_errors(flat, crystal, num_transformations=2)
    assert max(errors.values()) < 1e-10, errors


def test_bad_configuration_and_input_raise(model, float64):
    periodic = {"z": torch.tensor([1, 8]), "pos": torch.eye(3)[:2], "cell": 3 * torch.eye(3)[None]}
    with pytest.raises(ValueError, match="hierarchy=False"):
        model(periodic | {"pbc": torch.ones(1, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="below the longest X-H bond cutoff"):
        NBodyNetwork(SPECIES, r_max=1.0, **SMALL)
    with pytest.raises(ValueError, match="num_levels"):
        NBodyNetwork(SPECIES, r_max=3.0, **(SMALL | {"num_levels": 0}))


def test_model_file_round_trip(model, tmp_path, float64):
    save_model(model, tmp_path / "model.pt")
    record = torch.load(tmp_path / "model.pt", weights_only=True)
    assert record["model"] == "NBodyNetwork" and record["config"]["dipole"] is True
    loaded = load_model(tmp_path / "model.pt")
    structure = _structure()
    assert torch.equal(loaded(structure)["energy"], model(structure)["energy"])


@pytest.mark.parametrize("name", ["nbody_qm9_u0", "nbody_rmd17_aspirin", "nbody_rmd17_ethanol"])
def test_example_configs_are_valid(name):
    config = load_config(REPOSITORY / "examples" / "configs" / f"{name}.yaml")
    assert config.model.name == "NBodyNetwork" and config.model.options["hierarchy"] is True
