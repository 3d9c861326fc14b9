"""read_graph_inputs: no tensor values read, shape/dtype errors naming the argument, recorded cutoffs, fragment labels."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph, keys
from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential
from molequi.models.inputs import read_graph_inputs

R_MAX = 3.0


@pytest.fixture(scope="module")
def model() -> EquivariantPotential:
    """A small float64 model with perturbed weights (non-trivial energies)."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        model = EquivariantPotential([1, 6, 8], r_max=R_MAX, num_layers=2, hidden_irreps="8x0e+4x1o", lmax=1)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _ethanol(r_max: float = R_MAX, dtype: torch.dtype = torch.float64, seed: int = 0):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms_to_graph(atoms, r_max, dtype=dtype)


def test_a_batch_is_read_without_reading_any_tensor_value():
    """On the meta device tensors have shapes but no values: any host sync (.item(), bool(), int()) raises."""
    batch = Batch.from_data_list([_ethanol(seed=0), _ethanol(seed=1)]).to("meta")
    inputs = read_graph_inputs(batch, R_MAX, dtype=torch.float64)
    assert inputs.num_graphs == 2 and inputs.cell.shape == (2, 3, 3) and inputs.pos.device.type == "meta"
    graph = _ethanol().to("meta")  # one Data: one graph
    assert read_graph_inputs(graph, R_MAX).num_graphs == 1
    as_dict = {k: batch[k] for k in (keys.ATOMIC_NUMBERS, keys.POSITIONS, keys.BATCH, keys.CELL, keys.EDGE_INDEX)}
    assert read_graph_inputs(as_dict, R_MAX).num_graphs == 2  # a dict: G from the rows of cell


def test_a_dict_with_batch_and_no_cell_counts_the_graphs():
    pos = torch.zeros(3, 3, dtype=torch.float64)
    pos[:, 0] = torch.tensor([0.0, 1.0, 2.0])
    inputs = read_graph_inputs({"z": torch.tensor([1, 1, 1]), "pos": pos, "batch": torch.tensor([0, 0, 1])}, R_MAX)
    assert inputs.num_graphs == 2 and inputs.cell.shape == (2, 3, 3)
    assert inputs.edge_index.tolist() == [[1, 0], [0, 1]]  # built within r_max, only inside graph 0


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(pos=torch.zeros(3, 2, dtype=torch.float64)), r"'pos' must be a float tensor \[N, 3\], got a torch.float64 tensor of shape \[3, 2\]"),
        (dict(pos=torch.zeros(3, 3, dtype=torch.long)), r"'pos' must be a float tensor \[N, 3\], got a torch.int64"),
        (dict(z=torch.tensor([1.0, 1.0, 8.0])), r"'z' must be an integer tensor \[N\] = \[3\]"),
        (dict(z=torch.tensor([1, 8])), r"'z' must be an integer tensor \[N\] = \[3\] \(one atomic number per row of 'pos'\)"),
        (dict(edge_index=torch.tensor([[0, 1], [1, 0]], dtype=torch.int32)), r"'edge_index' must be an int64 tensor \[2, E\], got a torch.int32"),
        (dict(edge_index=torch.zeros(3, 2, dtype=torch.long)), r"'edge_index' must be an int64 tensor \[2, E\], got .* \[3, 2\]"),
        (dict(edge_shift=torch.zeros(3, 3, dtype=torch.float64)), r"'edge_shift' must be a tensor \[E, 3\] = \[2, 3\]"),
        (dict(batch=torch.zeros(2, dtype=torch.long)), r"'batch' must be an int64 tensor \[N\] = \[3\]"),
        (dict(cell=torch.zeros(2, 3, dtype=torch.float64)), r"'cell' must be a float tensor \[G, 3, 3\] = \[1, 3, 3\]"),
        (dict(pbc=torch.zeros(1, 2, dtype=torch.bool)), r"'pbc' must be a bool tensor \[G, 3\] = \[1, 3\]"),
        (dict(fragment_index=torch.zeros(2, dtype=torch.long)), r"'fragment_index' must be an integer tensor \[N\] = \[3\]"),
        (dict(pos=[[0.0, 0, 0]] * 3), r"'pos' must be a float tensor \[N, 3\], got a list"),
    ],
)
def test_bad_shapes_and_dtypes_name_the_argument(change, message):
    water = {
        "z": torch.tensor([8, 1, 1]),
        "pos": torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], dtype=torch.float64),
        "edge_index": torch.tensor([[1, 0], [0, 1]]),
    }
    with pytest.raises(ValueError, match=message):
        read_graph_inputs({**water, **change}, R_MAX)


def test_positions_in_another_dtype_than_the_model(model):
    with pytest.raises(ValueError, match=r"positions are torch.float32 but the model is torch.float64; .*dtype=torch.float64"):
        model(_ethanol(dtype=torch.float32))


def test_graphs_record_their_cutoff():
    graph = _ethanol(2.5)
    assert graph[keys.R_MAX] == "2.5"
    batch = Batch.from_data_list([graph, _ethanol(3.5)]).to("cpu")
    assert batch[keys.R_MAX] == ["2.5", "3.5"]  # text stays a Python value through collation and .to()


def test_a_graph_built_with_a_shorter_cutoff_is_refused(model):
    """A graph at 2.0 A fed to a 3.0 A model lacked every edge between 2 and 3 A, silently."""
    message = r"built with cutoff r_max=2 A but the model's r_max is 3 A: .*rebuild the graphs"
    with pytest.raises(ValueError, match=message):
        model(_ethanol(2.0))
    with pytest.raises(ValueError, match=message):  # one short graph in a batch is enough
        model(Batch.from_data_list([_ethanol(R_MAX), _ethanol(2.0)]))


def test_a_graph_built_with_a_longer_cutoff_gives_the_same_results(model):
    """Edges beyond the model's r_max contribute exactly nothing (the cutoff envelope is 0 there)."""
    exact, longer = _ethanol(R_MAX), _ethanol(R_MAX + 2.0)
    assert longer.edge_index.shape[1] > exact.edge_index.shape[1]
    a, b = model(exact), model(longer)
    assert torch.allclose(a["energy"], b["energy"], rtol=0, atol=1e-12)
    assert torch.allclose(a["forces"], b["forces"], rtol=0, atol=1e-12)


def test_fragment_index_is_read_and_offset_per_graph():
    graphs = [_ethanol(seed=0), _ethanol(seed=1)]
    for graph in graphs:
        graph[keys.FRAGMENT_INDEX] = torch.arange(graph.num_nodes) // 3
    inputs = read_graph_inputs(Batch.from_data_list(graphs), R_MAX)
    n = graphs[0].num_nodes
    assert torch.equal(inputs.fragment_index[:n], graphs[0][keys.FRAGMENT_INDEX])
    assert torch.equal(inputs.fragment_index[n:], graphs[1][keys.FRAGMENT_INDEX] + n)  # labels stay distinct
    assert read_graph_inputs(graphs[0], R_MAX).fragment_index is graphs[0][keys.FRAGMENT_INDEX]
    assert read_graph_inputs({"z": graphs[0].z, "pos": graphs[0].pos}, R_MAX).fragment_index is None
