"""Timing and memory helpers shared by the workers of ``benchmarks/model_speed.py``.

Only the standard library and torch: the same file is imported by workers that run in
molequi's, MACE's and NequIP's virtual environments, so every side is timed the same way.

Protocol: a worker times one (model, dtype, system, task) case in its own process and prints
one line ``MODEL_SPEED_RESULT {json}`` on stdout (see :func:`emit`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Any, Callable

RESULT_PREFIX = "MODEL_SPEED_RESULT "


def common_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every worker accepts (the driver passes all of them)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--structures", required=True, help="extxyz file: all frames form one batch")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--task", choices=["forces", "train"], default="forces",
                        help="forces: energy + forces by autograd; train: one optimiser step on an energy+forces loss")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--config", default="{}", help="model options as JSON (merged over the worker's defaults)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-limit-gb", type=float, default=0.0,
                        help="address-space limit of this process (0: none), so a run out of memory fails "
                             "here instead of waking the kernel's OOM killer on a shared machine")
    return parser


def setup(args: argparse.Namespace) -> None:
    """Threads, default dtype, seed and the optional memory limit."""
    import torch

    if args.mem_limit_gb > 0:
        limit = int(args.mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.set_default_dtype(getattr(torch, args.dtype))
    torch.manual_seed(args.seed)


def rss_mb() -> float:
    """Current resident set size (MB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size since the process started or since :func:`reset_peak_rss` (MB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ``clear_refs``); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def median_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median wall time of ``fn()`` in ms (for the untimed-by-default parts such as graph building)."""
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(call: Callable[[], Any], repeats: int, warmup: int) -> dict[str, Any]:
    """Time ``call()``: ``warmup`` untimed calls, then ``repeats`` timed ones.

    Returns the median, min and all wall times (ms), the median CPU time of the process per call
    (ms, all threads), the resident memory before the calls and its peak during them (MB).
    """
    import gc

    gc.collect()
    base = rss_mb()
    peak_reset = reset_peak_rss()
    for _ in range(warmup):
        call()
    wall, cpu = [], []
    for _ in range(repeats):
        start_cpu, start = time.process_time(), time.perf_counter()
        call()
        wall.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - start_cpu))
    return {
        "median_ms": statistics.median(wall),
        "min_ms": min(wall),
        "times_ms": [round(t, 2) for t in wall],
        "cpu_ms": statistics.median(cpu),
        "base_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "peak_is_per_case": peak_reset,
    }


def environment() -> dict[str, Any]:
    """Versions, threads and load average, recorded with every result."""
    import torch

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_start": list(os.getloadavg()),
    }


def emit(result: dict[str, Any]) -> None:
    """Print the result line the driver parses."""
    result = dict(result)
    result.setdefault("loadavg_end", list(os.getloadavg()))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def energy_forces_labels(frames: list, dtype) -> tuple[Any, Any]:
    """Energies ``[G]`` and forces ``[N, 3]`` stored with the frames (zeros where absent), for the training loss."""
    import numpy as np
    import torch

    energies, forces = [], []
    for atoms in frames:
        calc = atoms.calc
        results = getattr(calc, "results", {}) if calc is not None else {}
        energies.append(float(results.get("energy", atoms.info.get("energy", 0.0))))
        f = results.get("forces", atoms.arrays.get("forces"))
        forces.append(np.zeros((len(atoms), 3)) if f is None else np.asarray(f))
    return torch.tensor(energies, dtype=dtype), torch.tensor(np.concatenate(forces), dtype=dtype)


def energy_forces_loss(energy, forces, energy_ref, forces_ref, num_atoms: int, num_graphs: int):
    """The same loss for every model: per-atom energy MSE + force MSE (weights 1 : 10)."""
    energy_term = (((energy.reshape(-1) - energy_ref) / (num_atoms / num_graphs)) ** 2).mean()
    return energy_term + 10.0 * ((forces - forces_ref) ** 2).mean()


def timed_call(task: str, model: Any, predict: Callable[[bool], tuple[Any, Any]], frames: list, num_atoms: int) -> Callable[[], Any]:
    """The call a case times, the same for every side.

    Args:
        task: ``forces`` (energy + forces in inference mode) or ``train`` (one Adam step on the
            per-atom energy + 10 x force MSE of :func:`energy_forces_loss`).
        model: whose parameters the optimiser steps.
        predict: ``predict(training) -> (energy [G], forces [N, 3])``, the side's own forward.
        frames: the ASE frames of the batch (labels for ``train``); num_atoms: atoms in the batch.
    """
    import torch

    if task == "forces":
        return lambda: predict(False)
    energy_ref, forces_ref = energy_forces_labels(frames, torch.get_default_dtype())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def call() -> None:
        optimizer.zero_grad(set_to_none=True)
        energy, forces = predict(True)
        energy_forces_loss(energy, forces, energy_ref, forces_ref, num_atoms, len(frames)).backward()
        optimizer.step()

    return call


def report(call: Callable[[], Any], args: argparse.Namespace, network: Any, graph_ms: float, num_atoms: int, num_edges: int, **fields: Any) -> dict[str, Any]:
    """Time ``call`` (:func:`measure`), print the result line and return it.

    ``network`` is the module whose parameters are counted; ``fields`` name the side (``side``,
    ``model``, ``version``, ``config``); the rest (parameters,
    graph size, graph-building time, environment and timings) is filled in the same way for all.
    """
    result = {
        **fields,
        "params": sum(p.numel() for p in network.parameters()),
        "atoms": num_atoms,
        "edges": num_edges,
        "graph_ms": graph_ms,
        **environment(),
    }
    result.update(measure(call, args.repeats, args.warmup))
    emit(result)
    return result
