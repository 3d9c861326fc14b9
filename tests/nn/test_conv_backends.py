"""The fast paths timed by ``benchmarks/model_speed.py`` give the reference results (up to rounding).

``EquivariantConv`` computes its tensor product with fused PyTorch operations (training mode) or a
fused C++ kernel (eval mode, when it can be built); ``conv.fused = False`` runs the reference (PyG
``propagate`` with e3nn's ``TensorProduct``). Values and derivatives (inputs and parameters, first
and second order) must agree.
"""

from __future__ import annotations

import pytest
import torch

from molequi.models import EquivariantPotential
from molequi.nn import EquivariantConv
from molequi.nn.conv.equivariant_conv import fused_kernel

needs_kernel = pytest.mark.skipif(fused_kernel() is None, reason="the fused C++ kernel cannot be built here")

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
@pytest.mark.parametrize("order", [1, 2])
def test_pytorch_path_matches_reference(irreps_in, irreps_out, lmax, order, float64):
    torch.manual_seed(0)
    conv = EquivariantConv(irreps_in, irreps_out, irreps_sh=lmax, r_max=3.0, avg_num_neighbors=3.0)
    conv.kernel = False
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index, order)
    conv.fused = False
    reference = _derivatives(conv, x, pos, edge_index, order)
    for a, b in zip(fast, reference):
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


def _derivatives(conv, x, pos, edge_index, order=1):
    p, xx = pos.clone().requires_grad_(True), x.clone().requires_grad_(True)
    params = [q for q in conv.parameters() if q.requires_grad]
    out = conv(xx, p, edge_index)
    grads = torch.autograd.grad(out.pow(2).sum(), [xx, p, *params], create_graph=order > 1, allow_unused=True, materialize_grads=True)
    if order == 1:
        return (out, *grads)
    # second order: derivative of |d/dpos|^2 (a force loss) with respect to x and the parameters
    second = torch.autograd.grad(grads[1].pow(2).sum(), [xx, *params], allow_unused=True, materialize_grads=True)
    return (out, *grads, *second)


@needs_kernel
@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("edge_chunk,cache", [(7, 0), (7, 2**30), (4096, 0), (4096, 2**30)])
def test_kernel_matches_reference(irreps_in, irreps_out, lmax, order, edge_chunk, cache, float64):
    torch.manual_seed(0)
    conv = EquivariantConv(irreps_in, irreps_out, irreps_sh=lmax, r_max=3.0, avg_num_neighbors=3.0).eval()
    conv.edge_chunk, conv.edge_cache_bytes = edge_chunk, cache
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index, order)
    conv.fused = False
    reference = _derivatives(conv, x, pos, edge_index, order)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_sorted_unsorted_threads_and_float32(threads, dtype):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        conv = EquivariantConv("8x0e+4x1o+4x2e", "8x0e+4x1o+4x2e", r_max=3.0).eval()
        conv.edge_chunk = 50
        pos, edge_index = _graph(num_nodes=60, seed=1)
        pos = 3 * pos.to(dtype)
        x = conv.irreps_in.randn(pos.shape[0], -1)
        order = torch.argsort(edge_index[1], stable=True)
        kernel_unsorted = _derivatives(conv, x, pos, edge_index)
        kernel_sorted = _derivatives(conv, x, pos, edge_index[:, order])
        conv.kernel = False
        eager = _derivatives(conv, x, pos, edge_index)
        tol = 1e-10 if dtype == torch.float64 else 1e-5  # different summation orders
        for a, b, c in zip(kernel_unsorted, kernel_sorted, eager):
            scale = float(c.detach().abs().max())
            torch.testing.assert_close(a, c, rtol=tol, atol=tol * scale)
            torch.testing.assert_close(b, c, rtol=tol, atol=tol * scale)
    finally:
        torch.set_num_threads(previous)


@needs_kernel
def test_model_energy_forces_stress_same_in_every_path(float64):
    from ase.build import bulk

    torch.manual_seed(0)
    atoms = bulk("NaCl", "rocksalt", a=5.0) * (2, 2, 1)
    atoms.rattle(0.1, seed=1)
    data = {
        "z": torch.tensor(atoms.numbers),
        "pos": torch.tensor(atoms.positions),
        "cell": torch.tensor(atoms.cell[:])[None],
        "pbc": torch.ones(1, 3, dtype=torch.bool),
    }
    model = EquivariantPotential(["Na", "Cl"], r_max=4.0, hidden_irreps="8x0e+4x1o+4x2e", num_layers=2).eval()
    outputs = []
    for fused, kernel, cache in ((True, True, 0), (True, True, 2**30), (True, False, 0), (False, False, 0)):
        for block in model.blocks:
            block.conv.fused, block.conv.kernel, block.conv.edge_cache_bytes = fused, kernel, cache
        outputs.append(model(data, compute_stress=True))
    for out in outputs[1:]:
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(outputs[0][key], out[key], rtol=1e-10, atol=1e-12)


@needs_kernel
def test_training_gradients_same_in_every_path(float64):
    """The gradient of an energy + force loss (second derivatives through every layer) agrees across paths."""
    torch.manual_seed(0)
    pos, _ = _graph(num_nodes=12, seed=3)
    data = {"z": torch.tensor([1, 6, 8] * 4), "pos": 1.5 * pos}
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, hidden_irreps="6x0e+3x1o+2x2e", num_layers=3).train()
    results = []
    paths = [(True, True, 5, 0), (True, True, 5, 2**30), (True, True, 4096, 0), (True, False, 4096, 0), (False, False, 4096, 0)]
    for fused, kernel, chunk, cache in paths:
        for block in model.blocks:
            block.conv.fused, block.conv.kernel = fused, kernel
            block.conv.edge_chunk, block.conv.edge_cache_bytes = chunk, cache
        out = model(data)
        loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
        params = [p for p in model.parameters() if p.requires_grad]
        results.append(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
