"""NBodyNetwork: O(3), translation and permutation equivariance of every level, derivatives, configs, model files.

Physics across structures (additivity, batching, frozen fragments) is in ``test_nbody_physics.py``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from ase.build import bulk, molecule

from molequi.data import neighbor_list
from molequi.dtypes import default_dtype
from molequi.models import load_model, save_model
from molequi.models.inputs import read_graph_inputs
from molequi.models.nbody import NBodyNetwork
from molequi.models.nbody.network import FRAGMENT_INDEX
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
    """A small float64 model, seeded (building one takes about 2 s of CPU, so tests share them).

    The top-down gain starts at 0 (ReZero); it is set to 0.8 here so that the tests see the top-down path.
    """
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        model = NBodyNetwork(options.pop("species", SPECIES), r_max=options.pop("r_max", 3.0), **(SMALL | options))
        if model.hierarchy:
            with torch.no_grad():
                model.atom_down.message_gain.fill_(0.8)
        return model


@pytest.fixture(scope="module")
def model() -> NBodyNetwork:
    """The default model (hierarchy, tensor-product square) with the dipole head."""
    return _build(dipole=True)


def _structure(name: str = "CH3CH2OH", seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    atoms = molecule(name)
    atoms.rattle(0.05, seed=seed)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def _two_molecules(dtype=torch.float64) -> dict[str, torch.Tensor]:
    """Butane (two C2H5 fragments) and methanol 3.5 A away: 3 fragments, 2 molecules, a fragment graph."""
    atoms = molecule("trans-butane") + molecule("CH3OH")
    atoms.positions[14:] += (0.0, 0.0, 3.5)
    atoms.rattle(0.05, seed=1)
    return {"z": torch.tensor(atoms.numbers), "pos": torch.tensor(atoms.positions, dtype=dtype)}


def test_every_level_is_equivariant(model, float64):
    """Atom, fragment, fragment-graph, molecule and top-down states: O(3), translations, permutations."""
    structure = _two_molecules()
    edge_index, _ = neighbor_list(structure["pos"], model.r_max)

    def level(name):
        def layer(x, pos, edge_index, z):
            inputs = read_graph_inputs({"z": z, "pos": pos, "edge_index": edge_index}, model.r_max)
            states, hierarchy = model.level_states(inputs, edge_vectors(pos, edge_index))
            assert (hierarchy.num_fragments, hierarchy.num_molecules) == (3, 2)
            state = states[name]
            if name.startswith("edge"):  # per edge -> summed over each atom's incoming edges
                return state.new_zeros(z.shape[0], state.shape[1]).index_add(0, edge_index[1], state)
            if name.startswith("fragment"):
                return state[hierarchy.atom_fragment]
            if name == "molecule":
                return state[hierarchy.fragment_molecule[hierarchy.atom_fragment]]
            return state

        return layer

    tiers = {"fragment", "fragment_graph_1", "molecule", "atom_down"}
    assert set(model.level_irreps) == {"edge_1", "edge_2", "atom_1", "atom_2"} | tiers
    for name, irreps in model.level_irreps.items():
        errors = graph_layer_equivariance_errors(
            level(name),
            torch.zeros(structure["z"].shape[0], 1),
            structure["pos"],
            edge_index,
            "0e",
            irreps,
            num_transformations=2,
            node_inputs={"z": structure["z"]},
        )
        assert max(errors.values()) < 1e-10, (name, errors)


@pytest.mark.parametrize(
    "options",
    [None, {"hierarchy": False}, {"nonlinearity": "gate"}, {"fragment_layers": 0}, {"fragment_layers": 2}, {"species_mix": True}],
    ids=["hierarchy", "flat", "gate", "no_fragment_graph", "two_fragment_graph_levels", "species_mix"],
)
def test_model_is_equivariant(model, options, float64):
    model = model if options is None else _build(**options)
    errors = model_equivariance_errors(model, _two_molecules(), num_transformations=2)
    assert max(errors.values()) < 1e-10, errors


def test_model_is_equivariant_in_float32(model):
    """float32: errors are rounding, ~1e-6 of energies and forces of order one; 1e-4 is the stated tolerance."""
    model32 = copy.deepcopy(model).float()
    structure = _two_molecules(torch.float32)
    errors = model_equivariance_errors(model32, structure, num_transformations=2)
    assert max(errors.values()) < 1e-4, errors
    scale = model32(structure)["forces"].abs().max().item()
    assert scale > 1e-2  # the forces are not trivially zero


def test_forces_match_finite_differences(model, float64):
    assert finite_difference_force_error(model, _two_molecules()) < 1e-7


def test_activations_stay_bounded_through_depth(float64):
    model = _build(num_levels=5)
    structure = _two_molecules()
    inputs = read_graph_inputs(structure, model.r_max)
    with torch.no_grad():
        states, _ = model.level_states(inputs, edge_vectors(inputs.pos, inputs.edge_index))
    bound = math.sqrt(1.0 + 0.1)  # SoftNorm's ceiling on the RMS of a block
    for name, state in states.items():
        for (_, ir), sl in zip(model.level_irreps[name], model.level_irreps[name].slices()):
            rms = state[:, sl].pow(2).mean(-1).sqrt()  # per row
            assert rms.max() <= bound + 1e-12, (name, ir)
            if not name.startswith("edge") and name != "atom_1":
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
    with pytest.raises(ValueError, match="below the longest bond cutoff 1.98 A"):  # C-C: 1.3 (0.76 + 0.76) A
        NBodyNetwork(SPECIES, r_max=1.9, **SMALL)
    with pytest.raises(ValueError, match="fragment_layers"):
        NBodyNetwork(SPECIES, r_max=3.0, **(SMALL | {"fragment_layers": -1}))
    with pytest.raises(ValueError, match="num_levels"):
        NBodyNetwork(SPECIES, r_max=3.0, **(SMALL | {"num_levels": 0}))


def test_model_file_round_trip(model, tmp_path, float64):
    save_model(model, tmp_path / "model.pt")
    record = torch.load(tmp_path / "model.pt", weights_only=True)
    assert record["model"] == "NBodyNetwork" and record["config"]["dipole"] is True
    loaded = load_model(tmp_path / "model.pt")
    structure = _two_molecules()
    assert torch.equal(loaded(structure)["energy"], model(structure)["energy"])
    assert FRAGMENT_INDEX == "fragment_index"


def test_weights_of_the_former_hierarchy_are_refused_by_name(model, float64):
    former = dict(model.state_dict())
    former["fragment_level.filter_mlp.layer0.weight"] = torch.zeros(4, 8)  # a key only the former ParentLevel had
    with pytest.raises(ValueError, match="former hierarchy"):
        _build(dipole=True).load_state_dict(former)


@pytest.mark.parametrize("name", ["nbody_molecule", "nbody_qm9_u0", "nbody_rmd17_aspirin", "nbody_rmd17_ethanol"])
def test_example_configs_are_valid(name):
    config = load_config(REPOSITORY / "examples" / "configs" / f"{name}.yaml")
    assert config.model.name == "NBodyNetwork" and config.model.options["hierarchy"] is True


def test_species_mix_depends_on_the_species_of_the_atom(float64):
    """With a node attribute the atom level's mix is W_{z_i}: the same state and messages, another species, another output."""
    from molequi.models.nbody.levels import AtomLevel

    torch.manual_seed(0)
    level = AtomLevel("4x0e+4x1o", "4x0e+4x1o", "1x0e+1x1o", 3, irreps_node_attr="2x0e", radial_hidden=(8,))
    node, edge_index = torch.randn(3, 16), torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]])
    edge_sh, edge_features = torch.randn(4, 4), torch.randn(4, 3)
    first, second = torch.eye(2)[[0, 0, 0]], torch.eye(2)[[1, 1, 1]]
    out_first = level(node, edge_index, edge_sh, edge_features, first)
    assert (out_first - level(node, edge_index, edge_sh, edge_features, second)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="needs node_attr"):
        level(node, edge_index, edge_sh, edge_features)


def test_top_down_gain_starts_at_zero_and_old_files_get_gain_one(float64):
    """A new model starts without the top-down messages (ReZero); weights saved without the gain load with gain 1."""
    fresh = NBodyNetwork(SPECIES, r_max=3.0, **SMALL)
    assert fresh.atom_down.message_gain.item() == 0.0
    state = fresh.state_dict()
    del state["atom_down.message_gain"]
    fresh.load_state_dict(state)
    assert fresh.atom_down.message_gain.item() == 1.0
