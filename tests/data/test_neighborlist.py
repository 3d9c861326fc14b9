"""Neighbour lists: every backend against a brute-force reference and against each other."""

import itertools

import numpy as np
import pytest
import torch

from molequi.data import available_backends, neighbor_list
from molequi.nn.edge_embedding import edge_vectors

BACKENDS = available_backends()


def brute_force(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float) -> set[tuple]:
    """All (source j, target i, shift) with |pos_j - pos_i + shift @ cell| < r_max, by enumeration."""
    frac_span = 0.0
    if pbc.any():
        frac = pos @ np.linalg.inv(cell)
        frac_span = (frac.max(0) - frac.min(0)).max()
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0) if pbc.any() else np.ones(3)
    n = [int(np.ceil(r_max / h + frac_span)) + 1 if p else 0 for h, p in zip(heights, pbc)]
    edges = set()
    for shift in itertools.product(*(range(-k, k + 1) for k in n)):
        d = pos[None, :, :] - pos[:, None, :] + np.array(shift) @ cell  # [i, j]
        for i, j in zip(*np.nonzero(np.linalg.norm(d, axis=-1) < r_max)):
            if i != j or any(shift):
                edges.add((int(j), int(i), *shift))
    return edges


def as_set(edge_index: torch.Tensor, edge_shift: torch.Tensor) -> set[tuple]:
    return {(int(j), int(i), *(int(s) for s in shift)) for (j, i), shift in zip(edge_index.T.tolist(), edge_shift)}


def random_cell(rng: np.random.Generator, small: bool) -> np.ndarray:
    scale = rng.uniform(1.2, 2.5) if small else rng.uniform(3.0, 6.0)
    return scale * (np.eye(3) + 0.3 * rng.normal(size=(3, 3)))


@pytest.mark.parametrize("seed", range(12))
def test_backends_match_brute_force_on_random_cells(seed):
    rng = np.random.default_rng(seed)
    small = seed % 2 == 0  # small cells: atoms see their own images
    cell = random_cell(rng, small)
    pbc = rng.random(3) < 0.8 if seed % 3 else np.ones(3, dtype=bool)
    pos = rng.uniform(-0.5, 1.5, (int(rng.integers(1, 9)), 3)) @ cell  # some atoms outside the cell
    r_max = float(rng.uniform(1.5, 4.0))
    reference = brute_force(pos, cell, pbc, r_max)
    results = {}
    for backend in BACKENDS:
        edge_index, edge_shift = neighbor_list(
            torch.tensor(pos), r_max, torch.tensor(cell), torch.tensor(pbc), backend=backend
        )
        assert as_set(edge_index, edge_shift) == reference, backend
        results[backend] = (edge_index, edge_shift)
    for backend, (edge_index, edge_shift) in results.items():  # identical tensors, same order
        assert torch.equal(edge_index, results["torch"][0]) and torch.equal(edge_shift, results["torch"][1]), backend


@pytest.mark.parametrize("seed", range(6))
def test_torch_cell_list_on_large_cells(seed):
    from molequi.data.neighborlist.systems import complete_cell
    from molequi.data.neighborlist.torch_cell_list import cell_list_candidates

    rng = np.random.default_rng(100 + seed)
    cell = rng.uniform(9.0, 13.0) * (np.eye(3) + 0.15 * rng.normal(size=(3, 3)))
    pbc = np.array([True, True, seed % 3 != 0])  # some slabs
    pos = rng.uniform(-0.2, 1.2, (60, 3)) @ cell  # some atoms outside the cell
    r_max = 2.5
    full = complete_cell(torch.tensor(cell)[None], torch.tensor(pbc)[None])[0]
    assert cell_list_candidates(torch.tensor(pos), full, torch.tensor(pbc), r_max) is not None  # the path is used
    reference = brute_force(pos, cell, pbc, r_max)
    edge_index, edge_shift = neighbor_list(
        torch.tensor(pos), r_max, torch.tensor(cell), torch.tensor(pbc), backend="torch"
    )
    assert as_set(edge_index, edge_shift) == reference
    ase_index, ase_shift = neighbor_list(torch.tensor(pos), r_max, torch.tensor(cell), torch.tensor(pbc), backend="ase")
    assert torch.equal(edge_index, ase_index) and torch.equal(edge_shift, ase_shift)


def test_small_cell_sees_own_images():
    cell = torch.eye(3) * 2.0
    edge_index, edge_shift = neighbor_list(torch.zeros(1, 3), 2.5, cell, True)
    # 6 face neighbours at 2.0 and 12 edge neighbours at 2.83 > 2.5: only the 6 faces.
    assert edge_index.shape[1] == 6 and (edge_index == 0).all()
    assert sorted(map(tuple, edge_shift.long().tolist())) == sorted(
        [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_molecules_match_one_by_one(backend):
    rng = np.random.default_rng(0)
    sizes = [3, 1, 7, 12, 5]
    pos = [torch.tensor(rng.normal(size=(n, 3)) * 1.5) for n in sizes]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    edge_index, edge_shift = neighbor_list(torch.cat(pos), 2.0, batch=batch, backend=backend)
    offset, expected = 0, []
    for p in pos:
        ei, _ = neighbor_list(p, 2.0, backend="ase")
        expected.append(ei + offset)
        offset += len(p)
    assert torch.equal(edge_index, torch.cat(expected, dim=1))
    assert (edge_shift == 0).all()
    assert (batch[edge_index[0]] == batch[edge_index[1]]).all()


def test_batched_periodic_graphs_with_different_cells():
    rng = np.random.default_rng(3)
    cells = torch.tensor(np.stack([random_cell(rng, True), random_cell(rng, False), np.zeros((3, 3))]))
    pbc = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    sizes = torch.tensor([2, 4, 3])
    pos = torch.tensor(rng.normal(size=(9, 3)) * 2.0)
    batch = torch.repeat_interleave(torch.arange(3), sizes)
    results = [neighbor_list(pos, 3.0, cells, pbc, batch, backend=b) for b in BACKENDS]
    for edge_index, edge_shift in results[1:]:
        assert torch.equal(edge_index, results[0][0]) and torch.equal(edge_shift, results[0][1])
    edge_index, edge_shift = results[0]
    vec = edge_vectors(pos, edge_index, edge_shift, cells, batch)
    assert (vec.norm(dim=1) < 3.0).all()
    for g in range(3):  # per graph equals the single-graph call
        lo, hi = int(sizes[:g].sum()), int(sizes[: g + 1].sum())
        ei, es = neighbor_list(pos[lo:hi], 3.0, cells[g], pbc[g])
        mask = batch[edge_index[1]] == g
        assert torch.equal(edge_index[:, mask] - lo, ei) and torch.equal(edge_shift[mask], es)


def test_cutoff_is_strict_and_order_is_sorted():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for backend in BACKENDS:
        edge_index, _ = neighbor_list(pos, 1.5, backend=backend)  # the pair at exactly 1.5 is out
        assert edge_index.tolist() == [[2, 0], [0, 2]]
    edge_index, _ = neighbor_list(pos, 2.0)
    key = edge_index[1] * 3 + edge_index[0]
    assert torch.equal(key, key.sort().values)


def test_self_interaction_and_dtypes():
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float32)
    edge_index, edge_shift = neighbor_list(pos, 1.5, self_interaction=True)
    assert edge_index.tolist() == [[0, 1, 0, 1], [0, 0, 1, 1]]
    assert edge_index.dtype == torch.long and edge_shift.dtype == torch.float32 and edge_shift.shape == (4, 3)


def test_edge_vectors_are_differentiable_and_follow_the_convention():
    cell = torch.eye(3) * 3.0
    pos = torch.tensor([[0.2, 0.0, 0.0], [2.8, 0.0, 0.0]], requires_grad=True)
    edge_index, edge_shift = neighbor_list(pos, 1.0, cell, True)
    vec = edge_vectors(pos, edge_index, edge_shift, cell)
    # Atom 1 (source) seen from atom 0 (target) through the -x boundary: vector -0.4 x.
    first = (edge_index[0] == 1) & (edge_index[1] == 0)
    assert torch.allclose(vec[first], torch.tensor([[-0.4, 0.0, 0.0]]))
    vec.sum().backward()
    assert pos.grad is not None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pos=torch.zeros(2, 2)), "shape"),
        (dict(pos=torch.tensor([[0.0, 0.0, float("nan")]])), "finite"),
        (dict(pos=torch.zeros(2, 3), cell=torch.zeros(3, 3), pbc=True), "singular"),
        (dict(pos=torch.zeros(2, 3), batch=torch.tensor([1, 0])), "sorted"),
        (dict(pos=torch.zeros(2, 3), backend="nope"), "unknown"),
        (dict(pos=torch.zeros(2, 3), r_max=0.0), "positive"),
    ],
)
def test_bad_input_raises(kwargs, message):
    kwargs = {"r_max": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        neighbor_list(**kwargs)


@pytest.mark.parametrize("libraries", [["ase"], ["ase", "vesin"]])
def test_auto_backend_choice(monkeypatch, libraries):
    from molequi.data.neighborlist import api

    monkeypatch.setattr(api, "available_library_backends", lambda: libraries)
    molecule = api.make_systems(torch.zeros(5, 3), None, None, None)
    big = api.make_systems(torch.zeros(300, 3), None, None, None)
    periodic = api.make_systems(torch.zeros(5, 3), torch.eye(3) * 9.0, True, None)
    expected = ("vesin",) * 3 if "vesin" in libraries else ("torch", "ase", "torch")
    assert (api._choose_backend(molecule), api._choose_backend(big), api._choose_backend(periodic)) == expected
