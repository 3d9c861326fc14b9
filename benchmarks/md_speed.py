"""MD speed on the CPU: molequi's ASE calculator against MACE's, in ASE velocity-Verlet steps per second.

Systems: aspirin (21 atoms, the first frame of the rMD17 file) and a periodic fcc Cu box of 1,000
atoms (5 x 5 x 10 cubic cells, a = 3.61 A, rattled by 0.05 A). Untrained models (timing only),
float32, r_max = 5 A, energy and forces every step, 0.5 fs steps from 300 K velocities. After a
warm-up, ``--repeats`` blocks of steps are timed; the table shows the best block (least disturbed
by other work on a shared machine) and the median, with the 1-min load average of each row.

- molequi: ``EquivariantPotential`` defaults (32x0e+32x1o+32x2e, 3 layers, lmax 2, gate) through
  ``MolequiCalculator`` (skin neighbour list), in this process.
- MACE: mace-torch's ``MACECalculator`` with an untrained ``ScaleShiftMACE`` (residual interaction
  blocks, max_ell 3, correlation 3, 2 layers), 48x0e+48x1o (parameters matched to molequi) and
  64x0e+64x1o (MACE's usual small model), run by ``md_speed_mace.py`` in a subprocess with the
  python of a separate venv (mace-torch pins e3nn 0.4.4).

    python benchmarks/md_speed.py [--threads 2] [--mace-python /work/venv-mace/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from md_timing import md_steps_per_second  # noqa: E402

from molequi.calculators import MolequiCalculator  # noqa: E402
from molequi.io import atomic_write_json  # noqa: E402
from molequi.models import EquivariantPotential  # noqa: E402

ASPIRIN = "/work/shared/data/rmd17/aspirin_train_1200_macejax.xyz"
MACE_CONFIGS = ("48x0e+48x1o", "64x0e+64x1o")
R_MAX = 5.0


@dataclass
class Row:
    """One measurement of the table."""

    system: str
    atoms: int
    code: str
    model: str
    params: int
    threads: int
    load_1min: float
    rates: list[float]

    @property
    def best(self) -> float:
        """The fastest repeat (steps/s): the least disturbed by other work on a shared machine."""
        return max(self.rates)

    @property
    def median(self) -> float:
        """The median repeat (steps/s)."""
        return float(np.median(self.rates))


def systems(aspirin_path: str) -> dict[str, Atoms]:
    """The benchmark structures by name."""
    aspirin = ase.io.read(aspirin_path, index=0)
    aspirin.calc = None
    box = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10))
    box.rattle(0.05, seed=0)
    return {"aspirin": aspirin, "cu_box": box}


def time_molequi(name: str, atoms: Atoms, steps: int, warmup: int, repeats: int, threads: int) -> Row:
    """steps/s of molequi's calculator with the default model, in this process."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)  # untrained weights; some draws let atoms collapse within a few hundred steps
    model = EquivariantPotential(sorted(set(atoms.numbers.tolist())), r_max=R_MAX)
    atoms = atoms.copy()
    atoms.calc = MolequiCalculator(model, dtype="float32")
    load = os.getloadavg()[0]
    rates = md_steps_per_second(atoms, steps, warmup, repeats)
    config = f"{model.config['hidden_irreps']}, lmax {model.config['lmax']}, {model.config['num_layers']} layers"
    params = sum(p.numel() for p in model.parameters())
    import molequi

    return Row(name, len(atoms), f"molequi {molequi.__version__}", config, params, torch.get_num_threads(), load, rates)


def time_mace(
    name: str, structure: Path, steps: int, warmup: int, repeats: int, threads: int, hidden: str, python: str
) -> Row:
    """steps/s of MACE's calculator, in a subprocess with ``python``."""
    command = [python, str(HERE / "md_speed_mace.py"), str(structure), "--steps", str(steps), "--warmup", str(warmup)]
    command += ["--repeats", str(repeats), "--threads", str(threads), "--hidden-irreps", hidden, "--r-max", str(R_MAX)]
    load = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"MACE benchmark failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    n_atoms = len(ase.io.read(structure))
    return Row(name, n_atoms, out["code"], out["model"], out["params"], out["threads"], load, out["steps_per_s"])


def print_table(rows: list[Row]) -> None:
    """One table; MACE rows also show molequi's speed-up over them on the same system."""
    reference = {r.system: r.best for r in rows if r.code.startswith("molequi")}
    header = f"{'system':<8} {'atoms':>5}  {'code':<13} {'model':<46} {'params':>7} {'thr':>3} {'load':>5}"
    header += f" {'steps/s':>8} {'median':>7} {'ms/step':>8} {'molequi x':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        speedup = (
            f"{reference[r.system] / r.best:.2f}" if not r.code.startswith("molequi") and r.system in reference else ""
        )
        print(
            f"{r.system:<8} {r.atoms:>5}  {r.code:<13} {r.model:<46} {r.params:>7} {r.threads:>3} {r.load_1min:>5.2f}"
            f" {r.best:>8.2f} {r.median:>7.2f} {1000 / r.best:>8.1f} {speedup:>9}"
        )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aspirin", default=ASPIRIN, help="file whose first frame is the aspirin molecule")
    parser.add_argument(
        "--mace-python", default="/work/venv-mace/bin/python", help="python of the venv with mace-torch"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads per process (default: all cores)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        nargs=2,
        default=(30, 3),
        metavar=("SMALL", "LARGE"),
        help="timed steps per block: aspirin, box",
    )
    parser.add_argument(
        "--warmup", type=int, nargs=2, default=(10, 1), metavar=("SMALL", "LARGE"), help="warm-up steps: aspirin, box"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks of steps per row (default 3)")
    parser.add_argument("--systems", nargs="+", choices=("aspirin", "cu_box"), default=("aspirin", "cu_box"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()

    print(f"load average at start (1, 5, 15 min): {_load()}; {os.cpu_count()} cores")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch:
        for k, (name, atoms) in enumerate(systems(args.aspirin).items()):
            if name not in args.systems:
                continue
            steps, warmup = args.steps[k], args.warmup[k]
            rows.append(time_molequi(name, atoms, steps, warmup, args.repeats, args.threads))
            structure = Path(scratch) / f"system{k}.extxyz"
            ase.io.write(structure, atoms)
            for hidden in MACE_CONFIGS:
                rows.append(
                    time_mace(name, structure, steps, warmup, args.repeats, args.threads, hidden, args.mace_python)
                )
    print(f"load average at end (1, 5, 15 min): {_load()}")
    print("steps/s: the best of the repeats (median beside it); load: 1-min load average when the row started;")
    print("molequi x: molequi's best steps/s over this row's, same system")
    print_table(rows)
    if args.json:
        atomic_write_json(args.json, [asdict(r) for r in rows])


if __name__ == "__main__":
    main()
