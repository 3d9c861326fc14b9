"""Speed of the three forms of a potential: eager, ``torch.compile`` and the AOTInductor package, on a CPU or a GPU.

Systems: ``aspirin`` (21 atoms, the first rMD17 frame) and ``cu_box`` (the 1,000-atom rattled fcc Cu
box of ``md_speed.py``) by default; ``aspirin32`` (32 aspirin frames as one batch), ``water648`` and
``water5184`` (periodic water boxes) are ``model_speed.py``'s. One untrained model serves every
system (``EquivariantPotential`` defaults: 32x0e+32x1o+32x2e, 3 layers, lmax 2, gate, r_max 5 A;
species of all systems asked for), so one compiled graph and one package serve every size: the
atom and edge counts are dynamic. Forms:

- ``eager``: the model as trained (on the CPU its convolutions run the C++ kernel, on CUDA the
  fused PyTorch path);
- ``compiled``: :func:`molequi.deploy.compile_potential` (inductor, ``fullgraph``, ``dynamic``);
  a batch of several structures (aspirin32) gets its own graph;
- ``package``: ``molequi deploy``'s ``.pt2`` (one structure per call: not for aspirin32), loaded
  with :func:`molequi.deploy.load_package`.

Tasks: ``forces`` (energy and forces of a prebuilt graph: the calculator's model call, no
neighbour list) for every form, ``train`` (one Adam step on an energy + forces loss) for the eager
model. The table gives the median and minimum of ``--repeats`` calls after ``--warmup`` untimed
ones (CUDA: synchronised), and the setup time of each compiled form (its first call included).

    python benchmarks/deploy_speed.py --threads 1 --json /tmp/deploy_speed.json
    python benchmarks/deploy_speed.py --device cuda --systems aspirin32,water648,water5184 \\
        --dtypes float32,float64 --tasks forces,train
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from ase.build import bulk
from torch_geometric.data import Batch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from md_speed import ASPIRIN  # noqa: E402
from model_speed import aspirin_frames, water_box  # noqa: E402

from molequi.data import structure_from_atoms, structures_to_graphs  # noqa: E402
from molequi.deploy import compile_potential, deploy, load_package  # noqa: E402
from molequi.dtypes import default_dtype  # noqa: E402
from molequi.models import EquivariantPotential  # noqa: E402

SYSTEMS = ("aspirin", "cu_box", "aspirin32", "water648", "water5184")
FORMS = ("eager", "compiled", "package")
R_MAX = 5.0


def build_systems(names: list[str], aspirin_path: str) -> dict[str, list]:
    """``{name: [ase.Atoms, ...]}``: one structure, or the frames of one batch (aspirin32)."""
    built: dict[str, list] = {}
    if "aspirin" in names:
        built["aspirin"] = aspirin_frames(1, Path(aspirin_path))[0]
    if "cu_box" in names:  # as md_speed.py
        box = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10))
        box.rattle(0.05, seed=0)
        built["cu_box"] = [box]
    if "aspirin32" in names:
        built["aspirin32"] = aspirin_frames(32, Path(aspirin_path))[0]
    if {"water648", "water5184"} & set(names):
        water = water_box(6, seed=0)
        if "water648" in names:
            built["water648"] = [water]
        if "water5184" in names:
            big = water.repeat((2, 2, 2))
            big.rattle(0.05, seed=1)
            big.wrap()
            built["water5184"] = [big]
    return {name: built[name] for name in names}


def timed(call: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Wall times (ms) of ``repeats`` calls after ``warmup`` untimed ones (synchronised on CUDA)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    return times


def train_step(model: EquivariantPotential, batch: Batch) -> Callable[[], None]:
    """One Adam step on ``mean(E^2) + mean(F^2)`` (timing only: the labels are zero; forces kept differentiable)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model(batch)
        loss = out["energy"].square().mean() + out["forces"].square().mean()
        loss.backward()
        optimizer.step()

    return step


def run(args: argparse.Namespace, on_row: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Every (dtype, system, task, form) row; ``on_row(rows)`` after each (a run cut short keeps its rows)."""
    device = torch.device(args.device)
    structures = build_systems(args.systems, args.aspirin)
    species = sorted({int(z) for frames in structures.values() for atoms in frames for z in atoms.numbers})
    rows: list[dict[str, Any]] = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        with default_dtype(dtype):
            torch.manual_seed(0)
            model = EquivariantPotential(species, r_max=R_MAX).to(device).eval()
        batches = {
            name: Batch.from_data_list(
                structures_to_graphs(
                    [structure_from_atoms(a, where=f"{name} {k}") for k, a in enumerate(frames)], R_MAX, dtype=dtype
                )
            ).to(device)
            for name, frames in structures.items()
        }
        forms: dict[str, Callable[[Batch], Any]] = {"eager": model}
        setup: dict[str, float] = {}
        if "compiled" in args.forms:
            forms["compiled"] = compile_potential(model)
        with tempfile.TemporaryDirectory() as scratch:
            if "package" in args.forms:
                singles = [frames[0] for frames in structures.values() if len(frames) == 1]
                start = time.perf_counter()
                report = deploy(model, Path(scratch) / "model.pt2", structures=singles, stress=False, device=device)
                setup["package"] = time.perf_counter() - start
                print(f"# deployed in {setup['package']:.0f} s ({report.seconds}); {report.errors}", file=sys.stderr)
                forms["package"] = load_package(Path(scratch) / "model.pt2", device)
            for name, batch in batches.items():
                num_atoms, num_edges = int(batch.num_nodes), int(batch.edge_index.shape[1])
                large = num_atoms > 500
                repeats, warmup = (args.repeats_large, 1) if large else (args.repeats, 2)
                for task in args.tasks:
                    if task == "train" and name not in args.train_systems:
                        continue
                    for form in args.forms if task == "forces" else ("eager",):
                        if form == "package" and batch.num_graphs > 1:
                            continue  # a package evaluates one structure per call
                        if task == "train":
                            model.train()
                            call = train_step(model, batch)
                        else:
                            call = lambda f=forms[form], b=batch: f(b)  # noqa: E731
                        compiled_before = dict(getattr(forms[form], "compile_seconds", {}))
                        load = os.getloadavg()[0]
                        times = timed(call, repeats, warmup, device)  # a new size class compiles in the warm-up
                        model.eval()
                        seconds = getattr(forms[form], "compile_seconds", {})
                        new = [s for k, s in seconds.items() if k not in compiled_before]
                        rows.append({
                            "system": name, "atoms": num_atoms, "edges": num_edges, "dtype": dtype_name, "task": task,
                            "form": form, "median_ms": statistics.median(times), "min_ms": min(times),
                            "times_ms": [round(t, 2) for t in times], "first_call_s": sum(new) if new else None,
                            "setup_s": setup.get(form), "load_1min": load, "threads": torch.get_num_threads(),
                            "device": str(device),
                        })  # fmt: skip
                        print(f"# {name} {dtype_name} {task} {form}: {rows[-1]['median_ms']:.1f} ms", file=sys.stderr)
                        on_row(rows)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table; 'x eager' is the eager median over this form's, same system, dtype and task."""
    eager = {(r["system"], r["dtype"], r["task"]): r["median_ms"] for r in rows if r["form"] == "eager"}
    lines = [
        (
            "| system | atoms | edges | dtype | task | form | median ms | min ms | x eager | first call / deploy s "
            "| load |"
        ),
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        speedup = eager[(r["system"], r["dtype"], r["task"])] / r["median_ms"]
        setup = r["setup_s"] if r["setup_s"] is not None else r["first_call_s"]
        lines.append(
            f"| {r['system']} | {r['atoms']} | {r['edges']} | {r['dtype']} | {r['task']} | {r['form']} | "
            f"{r['median_ms']:.1f} | {r['min_ms']:.1f} | {speedup:.2f} | {'' if setup is None else f'{setup:.0f}'} | "
            f"{r['load_1min']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--systems", default="aspirin,cu_box", help=f"comma-separated, from {', '.join(SYSTEMS)}")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--tasks", default="forces", help="forces and/or train (train: eager model only)")
    parser.add_argument("--train-systems", default="aspirin,aspirin32", help="systems timed for the train task")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--repeats-large", type=int, default=5, help="timed calls for systems over 500 atoms")
    parser.add_argument("--aspirin", default=ASPIRIN, help="rMD17 aspirin file (built-in geometry when absent)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the setup here")
    args = parser.parse_args(argv)
    for name in ("systems", "dtypes", "forms", "tasks", "train_systems"):
        setattr(args, name, [item for item in getattr(args, name).split(",") if item])
    unknown = [s for s in args.systems if s not in SYSTEMS] + [f for f in args.forms if f not in FORMS]
    if unknown:
        parser.error(f"unknown system(s) or form(s): {unknown}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{os.cpu_count()} CPU cores"

    def header() -> str:
        return (
            f"deploy_speed on {args.device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"load average at start {load_start[0]:.2f}, now {os.getloadavg()[0]:.2f}"
        )

    def save(rows: list[dict[str, Any]]) -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"header": header(), "command": sys.argv, "rows": rows}, indent=1))

    rows = run(args, save)
    print(header())
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
