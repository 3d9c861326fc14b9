"""What the convolutions read: the edge embedding (module and function), the Bessel basis, the radial MLP."""

from __future__ import annotations

import torch
from e3nn import o3

from molequi.nn import BesselBasis, EdgeEmbedding
from molequi.nn.edge_embedding import embed_edges
from molequi.nn.radial import RadialMLP, apply_mlp


def test_bessel_frequencies_are_a_buffer_unless_trainable(float64):
    basis = BesselBasis(r_max=4.0, num_basis=5)
    assert [name for name, _ in basis.named_buffers()] == ["frequencies"] and not list(basis.parameters())
    assert list(basis.state_dict()) == ["frequencies"]
    torch.testing.assert_close(basis.frequencies, torch.arange(1.0, 6.0) * torch.pi / 4.0)
    trainable = BesselBasis(r_max=4.0, num_basis=5, trainable=True)
    assert [name for name, _ in trainable.named_parameters()] == ["frequencies"]
    r = torch.linspace(0.0, 4.0, 7)
    torch.testing.assert_close(basis(r), trainable(r).detach(), rtol=0, atol=0)


def test_edge_embedding_irreps_and_function_agree(dtype):
    embedding = EdgeEmbedding(irreps_sh=3, r_max=2.5, num_radial=6, cutoff_p=4)
    assert embedding.irreps_in == o3.Irreps("1x1o")
    assert embedding.irreps_sh == o3.Irreps.spherical_harmonics(3)
    assert embedding.irreps_out == o3.Irreps.spherical_harmonics(3) + o3.Irreps("6x0e")
    edge_vec = torch.randn(11, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    edge_sh, edge_radial = embedding(edge_vec)
    assert edge_sh.shape[1] + edge_radial.shape[1] == embedding.irreps_out.dim
    for module_output, function_output in zip((edge_sh, edge_radial), embed_edges(edge_vec, 3, 2.5, 6, 4)):
        torch.testing.assert_close(module_output, function_output, rtol=0, atol=0)


def test_radial_mlp_folded_matrices_give_the_e3nn_outputs(float64):
    torch.manual_seed(0)
    mlp = RadialMLP(num_radial=5, hidden=(7, 6), num_weights=9)
    assert [name for name, _ in mlp.named_parameters()] == ["layer0.weight", "layer1.weight", "layer2.weight"]
    h = torch.randn(13, 5)
    columns = torch.tensor([8, 0, 3, 3, 1])
    torch.testing.assert_close(apply_mlp(h, mlp.folded_matrices()), mlp(h), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(apply_mlp(h, mlp.folded_matrices(columns)), mlp(h)[:, columns], rtol=1e-12, atol=1e-12)


def test_radial_mlp_reset_parameters_redraws(float64):
    torch.manual_seed(0)
    mlp = RadialMLP(4, (8,), 3)
    before = [p.detach().clone() for p in mlp.parameters()]
    mlp.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, mlp.parameters()))
