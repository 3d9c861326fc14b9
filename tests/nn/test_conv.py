"""EquivariantConv and InteractionBlock: symmetry, PyG batching, gradients at degenerate geometry."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molequi.nn import EquivariantConv, InteractionBlock
from molequi.nn.nonlinearities import FAMILIES
from molequi.testing import TOLERANCES, assert_graph_layer_equivariant


def _random_graph(num_nodes: int = 10, r_max: float = 3.0, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    pos = 2.0 * torch.randn(num_nodes, 3, generator=generator).to(torch.get_default_dtype())
    distance = torch.cdist(pos, pos)
    target, source = torch.nonzero((distance < r_max) & ~torch.eye(num_nodes, dtype=torch.bool), as_tuple=True)
    return pos, torch.stack([source, target])


HIDDEN = {
    "scalar": "8x0e+4x0o",
    "norm": "4x0e+4x1o+2x2e",
    "gate": "4x0e+4x1o+2x1e+2x2e",
    "tensor_product": "4x0e+4x1o+4x2e",
    "fourier": "4x0e+4x1o+4x2e",
}
OPTIONS = {"fourier": {"act": lambda x: x * x - x, "degree": 2}}


def test_conv_equivariant(dtype):
    pos, edge_index = _random_graph()
    conv = EquivariantConv("4x0e+3x1o+2x2e", "4x0e+3x1o+2x1e+2x2e+1x3o", irreps_sh=3, r_max=3.0)
    x = conv.irreps_in.randn(pos.shape[0], -1)
    errors = assert_graph_layer_equivariant(conv, x, pos, edge_index, tolerance=TOLERANCES[dtype])
    assert set(errors) == {"o3", "translation", "permutation"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_interaction_block_equivariant_for_every_family(family, float64):
    pos, edge_index = _random_graph()
    block = InteractionBlock(
        "6x0e+2x1o+2x1e", HIDDEN[family], nonlinearity=family, nonlinearity_options=OPTIONS.get(family), r_max=3.0
    )
    x = block.irreps_in.randn(pos.shape[0], -1)
    assert_graph_layer_equivariant(block, x, pos, edge_index)


def test_block_with_species_self_connection(float64):
    pos, edge_index = _random_graph()
    block = InteractionBlock("6x0e+2x1o", "4x0e+2x1o", irreps_node_attr="3x0e", r_max=3.0)
    species = torch.nn.functional.one_hot(torch.arange(pos.shape[0]) % 3, 3).to(pos.dtype)
    x = block.irreps_in.randn(pos.shape[0], -1)
    assert_graph_layer_equivariant(block, x, pos, edge_index, node_inputs={"node_attr": species})
    with pytest.raises(ValueError, match="node_attr"):
        block(x, pos, edge_index)


def test_conv_inside_pyg_model_with_dataloader(float64):
    class TinyModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Linear(1, 4)
            self.block = InteractionBlock("4x0e", "4x0e+2x1o", r_max=3.0)
            self.conv = EquivariantConv("4x0e+2x1o", "1x0e", r_max=3.0)

        def forward(self, batch):
            x = self.embed(batch.z[:, None].to(batch.pos.dtype))
            x = self.block(x, batch.pos, batch.edge_index)
            return torch.zeros(batch.num_graphs).index_add(0, batch.batch, self.conv(x, batch.pos, batch.edge_index)[:, 0])

    graphs = []
    for seed in range(5):
        pos, edge_index = _random_graph(num_nodes=4 + seed, seed=seed)
        graphs.append(Data(pos=pos, edge_index=edge_index, z=torch.arange(pos.shape[0]) % 2 + 1))
    model = TinyModel()
    singles = torch.cat([model(next(iter(DataLoader([g], batch_size=1)))) for g in graphs])
    batched = torch.cat([model(b) for b in DataLoader(graphs, batch_size=2)])
    torch.testing.assert_close(batched, singles, atol=1e-12, rtol=0)


def test_gradients_finite_for_isolated_nodes_and_coincident_atoms(float64):
    conv = EquivariantConv("4x0e+2x1o", "4x0e+2x1o", r_max=3.0)
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [10.0, 0.0, 0.0]], requires_grad=True)
    # node 1 sits on node 0 but the graph excludes that pair; node 3 is isolated
    edge_index = torch.tensor([[0, 2, 1, 2], [2, 0, 2, 1]])
    x = conv.irreps_in.randn(4, -1).requires_grad_(True)
    out = conv(x, pos, edge_index)
    out.pow(2).sum().backward()
    assert torch.isfinite(pos.grad).all() and torch.isfinite(x.grad).all()
    assert torch.all(out[3] == 0)
    # even an explicit zero-length edge keeps value and gradients finite
    pos.grad = None
    conv(x, pos, torch.tensor([[1], [0]])).pow(2).sum().backward()
    assert torch.isfinite(pos.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters() if p.grad is not None)


def test_messages_vanish_smoothly_at_cutoff(float64):
    conv = EquivariantConv("2x0e", "2x0e", r_max=2.0)
    x = torch.ones(2, 2)
    edge_index = torch.tensor([[1], [0]])
    outputs = [conv(x, torch.tensor([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]), edge_index)[0] for r in (1.999999, 2.0, 2.5)]
    assert outputs[0].abs().max() < 1e-12
    assert outputs[1].abs().max() == 0 and outputs[2].abs().max() == 0


def test_unreachable_irreps_raise():
    with pytest.raises(ValueError, match="EquivariantConv.*2o"):
        EquivariantConv("4x0e", "4x0e+1x2o", irreps_sh=2)


def test_reset_parameters_redraws_the_weights_in_a_pyg_reinitialisation_loop():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"conv": EquivariantConv("4x0e+2x1o", "4x0e+2x1o", r_max=3.0, radial_hidden=(8,))})
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert {name.split(".")[1] for name in before} == {"linear_in", "radial_mlp", "linear_out"}
    for module in model.children():  # what a PyG user's re-initialisation loop does
        module.reset_parameters()
    for name, parameter in model.named_parameters():
        assert parameter.shape == before[name].shape and not torch.equal(parameter, before[name]), name


def test_conv_keeps_no_edge_embedding_but_embeds_pos_on_the_fly(float64):
    from molequi.nn import EdgeEmbedding

    conv = EquivariantConv("4x0e+2x1o", "4x0e+2x1o", irreps_sh=2, num_radial=6, r_max=3.0, cutoff_p=5)
    assert not [key for key in conv.state_dict() if "edge_embedding" in key or "frequencies" in key]
    pos, edge_index = _random_graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    edge_sh, edge_radial = EdgeEmbedding(2, 3.0, 6, cutoff_p=5)(pos[edge_index[0]] - pos[edge_index[1]])
    torch.testing.assert_close(
        conv(x, pos, edge_index), conv(x, None, edge_index, edge_sh=edge_sh, edge_radial=edge_radial), rtol=0, atol=0
    )
