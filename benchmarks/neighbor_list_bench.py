"""Neighbour-list backends: graphs per second for aspirin graphs and a 999-atom water box.

Usage: ``python benchmarks/neighbor_list_bench.py [--aspirin PATH] [--frames 512] [--r-max 5.0] [--rounds 3]``

Rows (each backend computes the same edges; see tests/data/test_neighborlist.py):

* aspirin, one call per graph: what an ASE calculator does at every MD step;
* aspirin, batched: one call for ``--frames`` graphs (``batch`` vector), what datasets do;
* aspirin, atoms_to_graph: the full conversion with ``backend="auto"`` (validation, targets);
* water box: one periodic 999-atom box (333 H2O at 1 g/cm^3) per call.

The result decides ``backend="auto"`` in ``molequi/data/neighborlist/api.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from molequi.data import atoms_to_graph, available_backends, neighbor_list

SHARED_ASPIRIN = Path(__file__).resolve().parents[1].parent / "shared/data/rmd17/aspirin_train_1200_macejax.xyz"


def rate(fn, n_graphs: int, min_time: float = 1.0, max_repeats: int = 20) -> float:
    """Graphs per second of ``fn`` (which processes ``n_graphs``), best of several runs after a warm-up."""
    fn()
    best, spent, repeats = float("inf"), 0.0, 0
    while (spent < min_time and repeats < max_repeats) or repeats == 0:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, repeats = min(best, elapsed), spent + elapsed, repeats + 1
    return n_graphs / best


def water_box(n_side: int = 7, n_molecules: int = 333, density: float = 0.997, seed: int = 0) -> Atoms:
    """``n_molecules`` randomly oriented waters on a jittered grid, periodic, at ``density`` g/cm^3."""
    rng = np.random.default_rng(seed)
    length = (n_molecules * 18.015 / 6.02214076e23 / density) ** (1 / 3) * 1e8  # A
    sites = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = sites[rng.choice(len(sites), n_molecules, replace=False)] * length / n_side
    box = Atoms(cell=[length] * 3, pbc=True)
    for site in sites:
        water = molecule("H2O")
        water.rotate(rng.uniform(0, 360), rng.normal(size=3))
        water.translate(site + rng.uniform(0, 0.3, 3))
        box += water
    return box


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aspirin", type=Path, default=SHARED_ASPIRIN, help="extxyz of aspirin frames")
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is printed")
    args = parser.parse_args()
    if not args.aspirin.exists():
        raise SystemExit(f"{args.aspirin}: not found; pass --aspirin with an extxyz of aspirin frames")

    frames = ase.io.read(args.aspirin, f":{args.frames}")
    box = water_box()
    r = args.r_max
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, r_max {r} A, "
        f"{len(frames)} aspirin frames, water box {len(box)} atoms"
    )
    print(f"| backend | device | aspirin, 1 graph/call | aspirin, batched | water box ({len(box)} atoms) |")
    print("|---|---|---|---|---|")
    runs = [
        (backend, device) for backend in available_backends() for device in (devices if backend == "torch" else ["cpu"])
    ]
    best: dict[tuple[str, str], tuple[float, ...]] = {}
    for _ in range(args.rounds):  # interleaved rounds, best of each: robust to a busy machine
        for backend, device in runs:
            result = measure(backend, torch.device(device), frames, box, r)
            best[backend, device] = tuple(map(max, zip(best.get((backend, device), result), result)))
    for (backend, device), (single, batched, water) in best.items():
        print(f"| {backend} | {device} | {single:,.0f} | {batched:,.0f} | {water:,.2f} |")
    full = rate(lambda: [atoms_to_graph(a, r) for a in frames], len(frames))
    print(f"\natoms_to_graph (backend auto, one frame per call): {full:,.0f} graphs/s")


def measure(
    backend: str, device: torch.device, frames: list[Atoms], box: Atoms, r: float
) -> tuple[float, float, float]:
    """Graphs/s of one backend: aspirin one per call, aspirin batched, water box."""
    pos = [torch.tensor(a.positions, dtype=torch.float32, device=device) for a in frames]
    flat = torch.cat(pos)
    batch = torch.repeat_interleave(torch.arange(len(pos), device=device), len(frames[0]))
    box_pos = torch.tensor(box.positions, dtype=torch.float32, device=device)
    box_cell = torch.tensor(box.cell.array, dtype=torch.float32, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def single() -> None:
        for p in pos:
            neighbor_list(p, r, backend=backend)
        sync()

    def batched() -> None:
        neighbor_list(flat, r, batch=batch, backend=backend)
        sync()

    def water() -> None:
        neighbor_list(box_pos, r, box_cell, True, backend=backend)
        sync()

    return rate(single, len(pos)), rate(batched, len(pos)), rate(water, 1, max_repeats=3)


if __name__ == "__main__":
    main()
