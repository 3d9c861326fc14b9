"""EquivariantConv's backends give the reference results (up to rounding), and the C++ kernel is safe.

``backend="reference"`` is PyG ``propagate`` with e3nn's ``TensorProduct``; ``"torch"`` the fused
PyTorch operations; ``"cpp"`` the fused C++ kernel (built once per session by the ``kernel``
fixture; its tests skip where it cannot be built). Values and derivatives (inputs and parameters,
first and second order) must agree; the kernel must reject out-of-range edges, fall back above its
channel limit and run its threads without per-call buffers of size ``N``.
"""

from __future__ import annotations

import pytest
import torch

from molequi.models import EquivariantPotential
from molequi.nn import EquivariantConv
from molequi.nn.conv.kernel import fused_kernel

CASES = [
    ("4x0e", "4x0e+3x1o+2x2e", 2),
    ("4x0e+3x1o+2x2e", "4x0e+3x1o+2x1e+2x2e+1x3o", 3),
    ("3x0e+2x0o+2x1o+2x1e", "3x0e+2x0o+2x1o+2x1e", 1),
    ("5x0e+2x1o", "1x0e", 2),
    ("2x1o+0x2e+1x0e", "2x1o+1x0e+3x2e", 2),
]


@pytest.fixture(scope="session")
def kernel():
    """The compiled kernel (built here, once per session, not at collection); skips where unavailable."""
    module = fused_kernel()
    if module is None:
        pytest.skip("the fused C++ kernel cannot be built here")
    return module


@pytest.fixture
def threads():
    """Sets torch's thread count for the test (``threads(n)``), restoring it afterwards."""
    previous = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(previous)


def _graph(num_nodes=9, seed=0, spread=1.5):
    generator = torch.Generator().manual_seed(seed)
    pos = spread * torch.randn(num_nodes, 3, generator=generator, dtype=torch.float64)
    distance = torch.cdist(pos, pos)
    target, source = torch.nonzero((distance < 3.0) & ~torch.eye(num_nodes, dtype=torch.bool), as_tuple=True)
    perm = torch.randperm(target.numel(), generator=generator)  # unsorted edges on purpose
    return pos, torch.stack([source[perm], target[perm]])


def _derivatives(conv, x, pos, edge_index, order=1):
    p, xx = pos.clone().requires_grad_(True), x.clone().requires_grad_(True)
    params = [q for q in conv.parameters() if q.requires_grad]
    out = conv(xx, p, edge_index)
    grads = torch.autograd.grad(
        out.pow(2).sum(), [xx, p, *params], create_graph=order > 1, allow_unused=True, materialize_grads=True
    )
    if order == 1:
        return (out, *grads)
    # second order: derivative of |d/dpos|^2 (a force loss) with respect to x and the parameters
    second = torch.autograd.grad(grads[1].pow(2).sum(), [xx, *params], allow_unused=True, materialize_grads=True)
    return (out, *grads, *second)


def _assert_all_close(results, expected, tolerance=1e-10):
    assert len(results) == len(expected)
    for a, b in zip(results, expected):
        scale = float(b.detach().abs().max()) if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * max(scale, 1e-2))


@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
@pytest.mark.parametrize("order", [1, 2])
def test_torch_backend_matches_reference(irreps_in, irreps_out, lmax, order, float64):
    torch.manual_seed(0)
    conv = EquivariantConv(irreps_in, irreps_out, irreps_sh=lmax, r_max=3.0, avg_num_neighbors=3.0, backend="torch")
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index, order)
    conv.backend = "reference"
    reference = _derivatives(conv, x, pos, edge_index, order)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_torch_backend_float32_and_empty_graph(dtype):
    torch.manual_seed(0)
    conv = EquivariantConv("4x0e+3x1o+2x2e", "4x0e+3x1o+2x2e", r_max=3.0, backend="torch")
    pos, edge_index = _graph()
    pos = pos.to(dtype)
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = conv(x, pos, edge_index)
    conv.backend = "reference"
    torch.testing.assert_close(fast, conv(x, pos, edge_index))
    conv.backend = "torch"
    empty = conv(x, pos, edge_index[:, :0])
    assert empty.shape == fast.shape and torch.all(empty == conv.linear_out(torch.zeros(9, conv.irreps_mid.dim)))


def test_backend_is_validated_and_the_state_dict_holds_no_constants():
    conv = EquivariantConv("4x0e+3x1o", "4x0e+3x1o", r_max=3.0)
    assert conv.backend == "cpp"
    with pytest.raises(ValueError, match="backend must be one of reference, torch, cpp; got 'fused'"):
        conv.backend = "fused"
    with pytest.raises(ValueError, match="backend"):
        EquivariantConv("4x0e", "4x0e", backend="kernel")
    keys = list(conv.state_dict())
    assert not any(key.startswith(("layout.", "edge_embedding.")) for key in keys), keys


@pytest.mark.parametrize("irreps_in,irreps_out,lmax", CASES)
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("edge_chunk,cache", [(7, 0), (7, 2**30), (4096, 0), (4096, 2**30)])
def test_kernel_matches_reference(kernel, irreps_in, irreps_out, lmax, order, edge_chunk, cache, float64):
    torch.manual_seed(0)
    conv = EquivariantConv(irreps_in, irreps_out, irreps_sh=lmax, r_max=3.0, avg_num_neighbors=3.0).eval()
    conv.edge_chunk, conv.edge_cache_bytes = edge_chunk, cache
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index, order)
    conv.backend = "reference"
    reference = _derivatives(conv, x, pos, edge_index, order)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
def test_kernel_threads_sorted_and_unsorted(kernel, threads, order, float64):
    """Two threads on chunks of 1,024 edges: the parallel code runs (two edge ranges per call)."""
    threads(2)
    chunk = 1024
    assert kernel.parallel_parts(chunk) == 2
    torch.manual_seed(0)
    conv = EquivariantConv("4x0e+2x1o+2x2e", "4x0e+2x1o+2x2e", r_max=3.0, radial_hidden=(8,), avg_num_neighbors=30.0)
    conv.edge_chunk = chunk
    pos, edge_index = _graph(num_nodes=64, seed=1, spread=1.2)
    assert edge_index.shape[1] >= 2 * chunk  # several chunks, the last one partial
    x = conv.irreps_in.randn(pos.shape[0], -1)
    by_target = torch.argsort(edge_index[1], stable=True)
    unsorted = _derivatives(conv, x, pos, edge_index, order)
    sorted_ = _derivatives(conv, x, pos, edge_index[:, by_target], order)
    conv.backend = "torch"
    expected = _derivatives(conv, x, pos, edge_index, order)
    _assert_all_close(unsorted, expected)
    _assert_all_close(sorted_, expected)


def test_kernel_float32_with_threads(kernel, threads, dtype):
    threads(2)
    torch.manual_seed(0)
    conv = EquivariantConv("4x0e+2x1o+2x2e", "4x0e+2x1o+2x2e", r_max=3.0, radial_hidden=(8,))
    conv.edge_chunk = 1024
    pos, edge_index = _graph(num_nodes=64, seed=1, spread=1.2)
    pos = pos.to(dtype)
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index)
    conv.backend = "torch"
    _assert_all_close(fast, _derivatives(conv, x, pos, edge_index), 1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("bad", [9, 1000, -1])
def test_kernel_rejects_edges_outside_the_graph(kernel, bad, float64):
    conv = EquivariantConv("4x0e+2x1o", "4x0e+2x1o", r_max=3.0)
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    for row in (0, 1):
        broken = edge_index.clone()
        broken[row, 3] = bad
        with pytest.raises(ValueError, match=f"edge_index holds node {bad}, but x has 9 nodes"):
            conv(x, None, broken, edge_vec=torch.randn(broken.shape[1], 3))


def test_kernel_falls_back_above_its_channel_limit(kernel, float64):
    torch.manual_seed(0)
    wide = kernel.max_channels + 1
    conv = EquivariantConv(f"{wide}x0e+2x1o", "4x0e+2x1o", r_max=3.0, radial_hidden=(8,))
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1)
    fast = _derivatives(conv, x, pos, edge_index)
    conv.backend = "torch"
    _assert_all_close(fast, _derivatives(conv, x, pos, edge_index))


def test_kernel_calls_touch_no_fresh_memory_of_size_n(kernel, threads, float64):
    """A call on a chunk of edges touches only their rows, even on several threads.

    Per-thread output copies come from the caller's workspace, allocated and zeroed once per pass.
    Before, every call (one per 4,096-edge chunk and block) allocated and zeroed ``threads x N``
    rows of its own: one page fault per page of them (allocations this large are fresh mappings).
    """
    resource = pytest.importorskip("resource")
    threads(2)
    num_nodes, num_edges, mul = 150_000, 1024, 16
    assert kernel.parallel_parts(num_edges) == 2
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(num_nodes, 3, mul, generator=generator)  # a 1o block; 0e spherical harmonics: 1o out
    sh = torch.randn(num_edges, 1, generator=generator)
    cg = torch.eye(3).reshape(1, 3, 3)
    weights = torch.randn(num_edges, mul, generator=generator)
    path = torch.zeros(3, dtype=torch.long)
    edges = torch.randint(0, 2_000, (2, num_edges), generator=generator)
    out, out_copies = torch.zeros(num_nodes, 3, mul), torch.zeros(1, num_nodes, 3, mul)
    grad_x, grad_copies = torch.zeros_like(x), torch.zeros(1, num_nodes, 3, mul)
    grad_sh, grad_w = torch.zeros_like(sh), torch.zeros_like(weights)

    def forward():
        kernel.fused_tp_forward(out, out_copies, x, sh, cg, weights, 0, 1, path, edges[0], edges[1], False)

    def backward():
        kernel.fused_tp_backward(grad_x, grad_copies, grad_sh, grad_w, out, x, sh, cg, weights, 0, 1, path, *edges)

    pages = out_copies.numel() * out_copies.element_size() // 4096  # one copy of N rows
    for call in (forward, backward):
        call()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            call()
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
        assert faults < pages / 20, f"{call.__name__}: {faults:.0f} page faults per call ({pages} pages of N rows)"
    messages = x[edges[0]] * (sh[:, :, None] * weights[:, None, :])  # [E, 3, mul], summed by 6 forward calls
    torch.testing.assert_close(out + out_copies[0], 6 * torch.zeros_like(x).index_add_(0, edges[1], messages))


def test_model_energy_forces_stress_same_on_every_backend(kernel, float64):
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
    for backend, cache in (("cpp", 0), ("cpp", 2**30), ("torch", 0), ("reference", 0)):
        for block in model.blocks:
            block.conv.backend, block.conv.edge_cache_bytes = backend, cache
        outputs.append(model(data, compute_stress=True))
    for out in outputs[1:]:
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(outputs[0][key], out[key], rtol=1e-10, atol=1e-12)


def test_training_gradients_same_on_every_backend(kernel, float64):
    """The gradient of an energy + force loss (second derivatives through every layer) agrees across backends."""
    torch.manual_seed(0)
    pos, _ = _graph(num_nodes=12, seed=3)
    data = {"z": torch.tensor([1, 6, 8] * 4), "pos": 1.5 * pos}
    model = EquivariantPotential(["H", "C", "O"], r_max=3.0, hidden_irreps="6x0e+3x1o+2x2e", num_layers=3).train()
    results = []
    settings = [("cpp", 5, 0), ("cpp", 5, 2**30), ("cpp", 4096, 0), ("torch", 4096, 0), ("reference", 4096, 0)]
    for backend, chunk, cache in settings:
        for block in model.blocks:
            block.conv.backend, block.conv.edge_chunk, block.conv.edge_cache_bytes = backend, chunk, cache
        out = model(data)
        loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
        params = [p for p in model.parameters() if p.requires_grad]
        results.append(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_linear_out_per_irrep_type_on_the_blocks(float64):
    """``BlockLinear`` equals e3nn's ``linear_out`` on the ``irreps_mid`` layout, and refuses what it cannot map."""
    from e3nn import o3

    from molequi.nn.conv.linear_out import BlockLinear

    torch.manual_seed(0)
    conv = EquivariantConv("3x0e+2x1o+2x2e", "2x0e+3x1o+1x1e+2x2e", irreps_sh=2)
    layout, linear = conv.layout, conv.linear_out
    num_nodes = 5
    mid = torch.randn(num_nodes, conv.irreps_mid.dim)  # e3nn's irreps_mid layout
    block_layout = torch.zeros_like(mid)
    for i, ((mul, ir), columns) in enumerate(zip(conv.irreps_mid, conv.irreps_mid.slices())):
        entry = mid[:, columns].reshape(num_nodes, mul, ir.dim).transpose(1, 2).reshape(num_nodes, -1)  # [k, u]
        block_layout[:, layout.mid_columns[i] : layout.mid_columns[i] + mul * ir.dim] = entry
    torch.testing.assert_close(conv.block_linear(block_layout, linear), linear(mid), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="bias-free"):
        BlockLinear(layout, o3.Linear(conv.irreps_mid, conv.irreps_out, biases=True))
