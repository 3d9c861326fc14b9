"""The fast paths timed by ``benchmarks/model_speed.py`` give the reference results (up to rounding).

``EquivariantConv`` computes its tensor product with fused batched operations; ``conv.fused = False``
runs the reference (PyG ``propagate`` with e3nn's ``TensorProduct``). Values and first derivatives
(inputs and parameters) must agree.
"""

from __future__ import annotations

import pytest
import torch

from molequi.nn import EquivariantConv

CASES = [
    ("4x0e", "4x0e+3x1o+2x2e", 2),
    ("4x0e+3x1o+2x2e", "4x0e+3x1o+2x1e+2x2e+1x3o", 3),
    ("3x0e+2x0o+2x1o+2x1e", "3x0e+2x0o+2x1o+2x1e", 1),
    ("5x0e+2x1o", "1x0e", 2),
    ("2x1o+0x2e+1x0e", "2x1o+1x0e+3x2e", 2),
]


def _graph(num_nodes=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pos = 1.5 * torch.randn(num_nodes, 3, generator=generator, dtype=torch.float64)
    distance = torch.cdist(pos, pos)
    target, source = torch.nonzero((distance < 3.0) & ~torch.eye(num_nodes, dtype=torch.bool), as_tuple=True)
    perm = torch.randperm(target.numel(), generator=generator)  # unsorted edges on purpose
    return pos, torch.stack([source[perm], target[perm]])


@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
def test_fused_conv_matches_reference(irreps_in, irreps_out, lmax, float64):
    torch.manual_seed(0)
    conv = EquivariantConv(irreps_in, irreps_out, irreps_sh=lmax, r_max=3.0, avg_num_neighbors=3.0)
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    results = {}
    for fused in (True, False):
        conv.fused = fused
        p, xx = pos.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out = conv(xx, p, edge_index)
        params = [q for q in conv.parameters() if q.requires_grad]
        grads = torch.autograd.grad(out.pow(2).sum(), [xx, p, *params], allow_unused=True, materialize_grads=True)
        results[fused] = (out, *grads)
    for a, b in zip(results[True], results[False]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_conv_matches_reference_float32_and_empty_graph(dtype):
    torch.manual_seed(0)
    conv = EquivariantConv("4x0e+3x1o+2x2e", "4x0e+3x1o+2x2e", r_max=3.0)
    pos, edge_index = _graph()
    pos = pos.to(dtype)
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = conv(x, pos, edge_index)
    conv.fused = False
    torch.testing.assert_close(fast, conv(x, pos, edge_index))
    conv.fused = True
    empty = conv(x, pos, edge_index[:, :0])
    assert empty.shape == fast.shape and torch.all(empty == conv.linear_out(torch.zeros(9, conv.irreps_mid.dim)))


def test_fused_conv_keeps_the_state_dict():
    conv = EquivariantConv("4x0e+3x1o", "4x0e+3x1o", r_max=3.0)
    assert not any(key.startswith("_") for key in conv.state_dict())
