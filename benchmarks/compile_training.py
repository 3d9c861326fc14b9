"""Does ``torch.compile`` pay for training on a CPU? Eager vs compiled training steps of the molecule config.

The model of ``examples/configs/molecule.yaml`` (EquivariantPotential, 32x0e+32x1o+32x2e, 3
layers, tensor-product nonlinearity), built as the trainer builds it (training-set statistics
of rMD17 aspirin), trains on batches of 4 aspirin frames in float32 with the trainer's step:
forward with forces, the weighted energy + force loss, backward (the force loss's double
backward), gradient clipping and an AdamW step (no EMA or schedule, the same for every form).
Forms:

- ``eager (cpp)``: the model as the trainer runs it (the convolutions' C++ kernel);
- ``eager (torch)``: the same with the convolutions' ``"torch"`` backend, the code that is compiled;
- ``compiled``: :class:`molequi.deploy.training_graph.CompiledTrainingStep` (inductor,
  ``fullgraph``, ``dynamic``), its first step (tracing, compiling the forward and the double
  backward, a fresh inductor cache) counted as the compile time.

Every form runs the same batches: ``--warmup`` untimed steps, then the median of ``--steps``
timed ones, in CPU time (``time.process_time``; compile times also count the C++ compiler's
child processes) and wall time. Break-even = compile time / (eager step - compiled step) in
steps; the budget columns give the compile time as a fraction of a 5- and a 15-minute run.

    nice -n 19 python benchmarks/compile_training.py --threads 1 --json /tmp/compile_training.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.loader import DataLoader

from molequi.data.statistics import compute_statistics
from molequi.deploy.training_graph import CompiledTrainingStep
from molequi.dtypes import default_dtype
from molequi.nn.conv import EquivariantConv
from molequi.training.config import load_config
from molequi.training.data import load_splits, reference_energies
from molequi.training.loss import WeightedLoss
from molequi.training.model_factory import build_model, model_arguments, model_r_max

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "configs" / "molecule.yaml"
DATA = "/work/shared/data/rmd17/aspirin_train_1200_macejax.xyz"
BUDGETS_MIN = (5, 15)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the C++ compiler runs inductor's code builds)."""
    times = os.times()  # children in clock ticks; the process itself at process_time's resolution
    return time.process_time() + times.children_user + times.children_system


def build(config_path: Path, data_path: str, batch_size: int, count: int) -> tuple[Any, torch.nn.Module, list[Any]]:
    """The config, its freshly initialised model (float32, the trainer's statistics) and ``count`` training batches."""
    config = load_config(config_path, [f"data.path={data_path}", f"batch_size={batch_size}"])
    with default_dtype(torch.float32):
        splits = load_splits(config.data, model_r_max(config.model), torch.float32, config.seed)
        statistics_ = compute_statistics(splits.train, atomic_energies=reference_energies(config.data, model_r_max(config.model)))
        torch.manual_seed(config.seed)
        model = build_model(config.model.name, model_arguments(config.model, statistics_))
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed))
    batches = [batch for batch, _ in zip(loader, range(count))]
    return config, model, batches


def training_step(forward: Callable[..., dict[str, torch.Tensor]], model: torch.nn.Module, config: Any) -> Callable[[Any], float]:
    """The trainer's step through ``forward`` (the model or a compiled step): loss, backward, clipping, AdamW."""
    optim = config.optim
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, amsgrad=optim.amsgrad
    )
    loss = WeightedLoss(config.loss)

    def step(batch: Any) -> float:
        value = loss(forward(batch, compute_forces=True), batch)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        return value.item()

    return step


def measure(step: Callable[[Any], float], batches: list[Any], warmup: int) -> dict[str, float]:
    """First-step, and median of the timed steps, wall and CPU seconds."""
    walls, cpus = [], []
    for batch in batches:
        wall, cpu = time.perf_counter(), cpu_seconds()
        step(batch)
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return {
        "first_wall_s": walls[0], "first_cpu_s": cpus[0],
        "wall_ms": 1e3 * statistics.median(walls[warmup:]), "cpu_ms": 1e3 * statistics.median(cpus[warmup:]),
    }  # fmt: skip


def forms(model: torch.nn.Module, backend: str) -> dict[str, tuple[torch.nn.Module, Callable[..., Any]]]:
    """``{form: (the trained model, its forward)}``, each a copy of the same initial weights."""
    eager, torch_backend, compiled = (copy.deepcopy(model).train() for _ in range(3))
    for module in torch_backend.modules():
        if isinstance(module, EquivariantConv):
            module.backend = "torch"
    return {
        "eager (cpp)": (eager, eager),
        "eager (torch)": (torch_backend, torch_backend),
        "compiled": (compiled, CompiledTrainingStep(compiled, backend=backend)),
    }


def _break_even(compile_s: float, saved_ms: float) -> str:
    """Steps after which a compile of ``compile_s`` seconds saving ``saved_ms`` per step has paid."""
    return f"{1e3 * compile_s / saved_ms:.0f}" if saved_ms > 0 else "never"


def table(results: dict[str, dict[str, float]], baseline: str) -> list[str]:
    """Markdown rows: step times, compile time (first step minus a steady one), break-even and budget shares."""
    lines = [
        "| form | step CPU ms | step wall ms | compile CPU s | compile wall s | break-even steps (CPU, wall) | "
        + " | ".join(f"compile / {b} min (CPU)" for b in BUDGETS_MIN) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(BUDGETS_MIN),
    ]  # fmt: skip
    base = results[baseline]
    for name, r in results.items():
        compile_cpu = max(0.0, r["first_cpu_s"] - r["cpu_ms"] / 1e3)
        compile_wall = max(0.0, r["first_wall_s"] - r["wall_ms"] / 1e3)
        even = "-" if name == baseline else ", ".join(
            _break_even(compile_s, base[ms] - r[ms]) for compile_s, ms in ((compile_cpu, "cpu_ms"), (compile_wall, "wall_ms"))
        )
        shares = " | ".join(f"{compile_cpu / (60 * b):.0%}" for b in BUDGETS_MIN)
        lines.append(
            f"| {name} | {r['cpu_ms']:.1f} | {r['wall_ms']:.1f} | {compile_cpu:.1f} | {compile_wall:.1f} | {even} | {shares} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per form")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (the compiled form's first one compiles)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled form")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="compile_training_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # a cold compile
        run(args)


def run(args: argparse.Namespace) -> None:
    """Time every form and print the table (see the module docstring)."""
    load_start = os.getloadavg()
    config, model, batches = build(args.config, args.data, args.batch_size, args.warmup + args.steps)
    results, compile_seconds = {}, {}
    for name, (trained, forward) in forms(model, args.backend).items():
        print(f"{name}: {len(batches)} steps ...", file=sys.stderr, flush=True)
        with default_dtype(torch.float32):
            results[name] = measure(training_step(forward, trained, config), batches, args.warmup)
        if isinstance(forward, CompiledTrainingStep):
            compile_seconds = {str(k): v for k, v in forward.compile_seconds.items()}
        print(f"  {results[name]}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()
    atoms = [int(b.num_nodes) for b in batches]
    print(f"{config.model.name} {config.model.options.get('hidden_irreps')}, {config.model.options.get('num_layers')} layers, "
          f"float32, batch {args.batch_size} ({atoms[0]} atoms), {args.threads} thread(s), torch {torch.__version__}, "
          f"backend {args.backend}; median of {args.steps} steps after {args.warmup}\n")  # fmt: skip
    print("\n".join(table(results, "eager (cpp)")))
    print(f"\ntrace + first compiled call (wall s): {compile_seconds}")
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_end}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "compile_seconds": compile_seconds,
                                         "load_start": load_start, "load_end": load_end}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
