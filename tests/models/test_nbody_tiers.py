"""The subsystem tiers of the N-body network: bipartite convolution, parent and top-down levels."""

from __future__ import annotations

import torch
from e3nn import o3

from molequi.models.nbody.tiers import BipartiteConv, DisplacementEmbedding, ParentLevel, TopDownLevel
from molequi.testing import equivariance_error, random_o3, wigner_matrices

HIDDEN = o3.Irreps("4x0e+4x1o+4x2e")
TIER = {"lmax": 2, "num_basis": 4, "radial_hidden": (8,)}


def test_bipartite_conv_sums_the_reference_messages_into_the_targets(float64):
    torch.manual_seed(0)
    layer = BipartiteConv(HIDDEN, HIDDEN, o3.Irreps.spherical_harmonics(2), num_radial=4, radial_hidden=(8,))
    sources, num_targets = torch.randn(5, HIDDEN.dim), 3
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 4], [0, 0, 1, 2, 2, 1]])
    edge_sh, edge_radial = torch.randn(6, 9), torch.randn(6, 4)
    conv = layer.conv
    messages = conv.message(conv.linear_in(sources)[edge_index[0]], edge_sh, conv.radial_mlp(edge_radial))
    expected = conv.linear_out(messages.new_zeros(num_targets, messages.shape[1]).index_add(0, edge_index[1], messages))
    out = layer(sources, num_targets, edge_index, edge_sh, edge_radial)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[states (HIDDEN) | displacement (1o)]`` -> ``(states, displacement)``."""
    return x[:, : HIDDEN.dim], x[:, HIDDEN.dim :]


def test_parent_level_is_equivariant_and_normalised_by_child_count(float64):
    torch.manual_seed(0)
    parent = torch.tensor([0, 0, 0, 1, 2, 2])
    count = torch.bincount(parent)
    for square in (True, False):
        level = ParentLevel(HIDDEN, HIDDEN, length=1.5, square=square, **TIER)

        def layer(x, level=level):
            children, displacement = _split(x)
            return level(children, displacement, parent, count)[parent]  # per child, to compare as rows

        inputs = torch.randn(6, HIDDEN.dim + 3)
        assert equivariance_error(layer, HIDDEN + "1x1o", HIDDEN, inputs=inputs) < 1e-10
    # permuting the children of a parent leaves it unchanged
    children, displacement = _split(inputs)
    order = torch.tensor([2, 0, 1, 3, 5, 4])
    torch.testing.assert_close(
        level(children[order], displacement[order], parent[order], count), level(children, displacement, parent, count)
    )


def test_top_down_level_is_equivariant(float64):
    torch.manual_seed(0)
    level = TopDownLevel(HIDDEN, HIDDEN, HIDDEN, lengths=(1.5, 3.0), **TIER)
    assert level.message_gain.item() == 0.0  # ReZero: the messages start switched off
    with torch.no_grad():
        level.message_gain.fill_(0.8)
    children, parents = torch.randn(5, HIDDEN.dim), [torch.randn(3, HIDDEN.dim), torch.randn(2, HIDDEN.dim)]
    displacements = [torch.randn(5, 3), torch.randn(5, 3)]
    index = [torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 0, 0, 1, 1])]
    reference = level(children, parents, displacements, index)
    matrices = random_o3(2)
    for matrix, d in zip(matrices, wigner_matrices(HIDDEN, matrices)):
        moved = level(children @ d.T, [p @ d.T for p in parents], [v @ matrix.T for v in displacements], index)
        torch.testing.assert_close(moved, reference @ d.T, atol=1e-10, rtol=0)
    # the kinds differ: swapping the ancestors' roles changes the result
    swapped = level(children, parents[::-1], displacements[::-1], index[::-1])
    assert (swapped - reference).abs().max() > 1e-3


def test_displacement_embedding_is_smooth_at_zero(float64):
    embedding = DisplacementEmbedding(lmax=2, length=1.5, num_basis=4)
    d = torch.zeros(1, 3, requires_grad=True)
    sh, basis = embedding(d)
    assert torch.equal(sh[0], torch.tensor([1.0] + [0.0] * 8))
    (gradient,) = torch.autograd.grad((sh.sum() + basis.sum()), d)
    assert bool(torch.isfinite(gradient).all())
