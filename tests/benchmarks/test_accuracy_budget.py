"""``benchmarks/accuracy_budget.py``: splits, files, errors and table (fast), and one short run of both codes (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
MACE_PYTHON = ROOT / ".peers" / "mace" / "bin" / "python"

sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import accuracy_budget as bench
    import mace_train_worker as worker
finally:
    sys.path.pop(0)


def frames(num: int, seed: int, atoms: int = 4) -> list[Atoms]:
    """Small molecules (C and H, atoms >= 1 A apart) with random energies and forces (8 decimals, as extxyz keeps)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        positions = np.arange(atoms)[:, None] * np.array([1.2, 0.0, 0.0]) + rng.uniform(-0.1, 0.1, (atoms, 3))
        frame = Atoms(numbers=[6] + [1] * (atoms - 1), positions=np.round(positions, 8))
        forces = np.round(rng.normal(size=(atoms, 3)), 8)
        frame.calc = SinglePointCalculator(frame, energy=-100 + rng.normal(), forces=forces)
        out.append(frame)
    return out


def isolated_atoms() -> list[Atoms]:
    out = []
    for number, energy in ((1, -13.6), (6, -1029.5)):
        atom = Atoms(numbers=[number], positions=[[0.0, 0.0, 0.0]])
        atom.calc = SinglePointCalculator(atom, energy=energy)
        out.append(atom)
    return out


@pytest.fixture
def data_dir(tmp_path):
    """A data folder laid out like ../shared/data/3bpa: 60 training frames; a test file of 40, 5 of them training frames."""
    folder = tmp_path / "data" / "3bpa"
    folder.mkdir(parents=True)
    source = frames(60, seed=1)
    test = frames(35, seed=2) + [source[i] for i in (3, 10, 20, 30, 59)]
    ase.io.write(folder / "train_300K.xyz", source)
    ase.io.write(folder / "train_mixedT.xyz", test)
    ase.io.write(folder / "iso_atoms.xyz", isolated_atoms())
    return tmp_path / "data"


def energies(path) -> list[float]:
    return [a.info[bench.ENERGY_KEY] for a in ase.io.read(path, ":")]


def test_labelled_frames_round_trip_exactly_through_extxyz(tmp_path):
    original = frames(3, seed=0)
    ase.io.write(tmp_path / "f.extxyz", [bench.labelled(a) for a in original])
    for a, b in zip(original, ase.io.read(tmp_path / "f.extxyz", ":")):
        assert b.info[bench.ENERGY_KEY] == a.get_potential_energy()
        assert np.array_equal(b.arrays[bench.FORCES_KEY], a.get_forces()) and np.array_equal(b.positions, a.positions)
        assert b.calc is None


def test_without_overlap_removes_repeated_geometries_and_keeps_the_order():
    reference, others = frames(5, seed=0), frames(4, seed=1)
    moved = reference[2].copy()
    moved.positions += 1e-7  # below the 1e-5 A matching precision: the same geometry
    test = [others[0], reference[0], others[1], moved, others[2], others[3]]
    kept, removed = bench.without_overlap(test, reference)
    assert removed == 2 and kept == [others[0], others[1], others[2], others[3]]


def test_draw_gives_disjoint_seeded_sets_and_rejects_too_many():
    train, val = bench.draw(100, 60, 10, seed=3)
    assert len(train) == 60 and len(val) == 10 and not set(train) & set(val) and max(train + val) < 100
    assert (train, val) == bench.draw(100, 60, 10, seed=3) and train != bench.draw(100, 60, 10, seed=4)[0]
    with pytest.raises(ValueError, match="do not fit"):
        bench.draw(10, 8, 3, seed=0)


def test_molequi_file_order_makes_molequis_own_split_the_given_one(tmp_path):
    from molequi.training.config import DataConfig
    from molequi.training.data import load_splits

    train, val = [bench.labelled(a) for a in frames(12, seed=5)], [bench.labelled(a) for a in frames(4, seed=6)]
    path = tmp_path / "trainval.extxyz"
    ase.io.write(path, bench.molequi_file_order(train, val, seed=7))
    config = DataConfig(path=str(path), train_size=12, val_size=4, energy_key=bench.ENERGY_KEY,
                        forces_key=bench.FORCES_KEY, cache_dir=str(tmp_path / "cache"))  # fmt: skip
    splits = load_splits(config, r_max=3.0, dtype=__import__("torch").float64, seed=7)
    assert [float(g.energy) for g in splits.train] == [a.info[bench.ENERGY_KEY] for a in train]
    assert [float(g.energy) for g in splits.val] == [a.info[bench.ENERGY_KEY] for a in val]
    assert [splits.indices["train"], splits.indices["val"]] == list(bench.molequi_positions(12, 4, seed=7))


def test_prepare_set_writes_disjoint_splits_and_a_test_set_without_training_frames(data_dir, tmp_path):
    info = bench.prepare_set("3bpa", data_dir, tmp_path / "work", seed=0, quick=True)
    n_train, n_val, n_test = bench.QUICK_FRAMES
    train, val = energies(info["files"]["train"]), energies(info["files"]["val"])
    assert len(train) == n_train and len(val) == n_val and not set(train) & set(val)
    assert sorted(energies(info["files"]["trainval"])) == sorted(train + val)
    assert info["removed_overlap"] == {"mixedT": 5} and info["frames"]["mixedT"] == n_test
    test = ase.io.read(info["tests"]["mixedT"], ":")
    assert len(test) == n_test and not {bench.position_key(a) for a in test} & {
        bench.position_key(a) for a in ase.io.read(data_dir / "3bpa" / "train_300K.xyz", ":")
    }
    iso = ase.io.read(info["isolated_atoms"], ":")
    assert [a.info[bench.ENERGY_KEY] for a in iso] == [-13.6, -1029.5]


def test_errors_are_per_structure_and_per_component_in_meV():
    ref_e, ref_f = np.array([-10.0, -20.0]), np.zeros((3, 3))
    forces = np.zeros((3, 3))
    forces[0, 0], forces[2, 1] = 0.004, -0.002
    result = bench.errors(ref_e + [0.001, -0.003], forces, ref_e, ref_f)
    assert result["frames"] == 2
    assert result["energy_mae"] == pytest.approx(2.0) and result["energy_rmse"] == pytest.approx(np.sqrt(5.0))
    assert result["forces_mae"] == pytest.approx(6 / 9) and result["forces_rmse"] == pytest.approx(np.sqrt(20 / 9))
    with pytest.raises(ValueError, match="do not match"):
        bench.errors(ref_e[:1], forces, ref_e, ref_f)


def run(label, code, val_f, test_f, size=None):
    errors = {name: {"energy_mae": f, "energy_rmse": 2 * f, "forces_mae": f, "forces_rmse": 2 * f} for name, f in (("val", val_f), ("mixedT", test_f))}
    return {"set": "3bpa", "budget_min": 5.0, "code": code, "size": size, "label": label, "epochs": 3,
            "epoch_s": [1.0, 2.0, 3.0], "loadavg": [1.0, 2.0], "cpu_s": 45.0, "process_s": 50.0, "errors": errors}  # fmt: skip


def test_table_marks_the_mace_size_best_on_validation_and_divides_by_it():
    results = [run("molequi", "molequi", 5.0, 40.0), run("MACE 32:1", "mace", 9.0, 60.0, "32:1"), run("MACE 64:1", "mace", 10.0, 50.0, "64:1")]
    assert bench.best_mace(results) is results[1]  # lowest validation force MAE, not lowest test
    table = bench.format_table(results, {"3bpa": {"tests": {"mixedT": ""}, "frames": {"mixedT": 469}}})
    assert "| 3bpa | 5 min | mixedT (469) | MACE 32:1 * | 3 | 2.0 | 60.0 | 120.0 | 60.0 | 120.0 | 90 | 1.00-2.00 |" in table
    assert "| **molequi / MACE 32:1** | | | 0.67 | 0.67 | 0.67 | 0.67 | | |" in table
    assert "MACE 64:1 *" not in table


def test_table_divides_every_molequi_config_by_the_best_mace():
    results = [run("molequi molecule", "molequi", 5.0, 40.0), run("molequi nbody_molecule", "molequi", 6.0, 30.0), run("MACE 32:1", "mace", 9.0, 60.0, "32:1")]
    table = bench.format_table(results, {"3bpa": {"tests": {"mixedT": ""}, "frames": {"mixedT": 469}}})
    assert "| **molequi molecule / MACE 32:1** | | | 0.67 | 0.67 | 0.67 | 0.67 | | |" in table
    assert "| **molequi nbody_molecule / MACE 32:1** | | | 0.50 | 0.50 | 0.50 | 0.50 | | |" in table


def earlier_file(tmp_path, results, **settings):
    split = {"frames": {"train": 450, "val": 50, "mixedT": 469}, "removed_overlap": {"mixedT": 31}, "train_source_indices": [1, 2], "val_source_indices": [3]}
    settings = {"clock": "cpu", "seed": 0, "quick": False, "threads": 1, "concurrent": True, "molequi_config": "/x/molecule.yaml", **settings}
    path = tmp_path / f"earlier{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps({"settings": settings, "sets": {"3bpa": split}, "results": results}))
    return path, {"3bpa": split}


def test_earlier_runs_join_only_on_the_same_split_and_settings(tmp_path):
    import argparse

    old_molequi = {k: v for k, v in run("molequi", "molequi", 5.0, 40.0).items()}
    failed = {"set": "3bpa", "budget_min": 5.0, "code": "mace", "label": "MACE 8:0", "error": "boom"}
    rows = [old_molequi, run("MACE 32:1", "mace", 9.0, 60.0, "32:1"), {**run("MACE 32:1", "mace", 9.0, 60.0), "budget_min": 15.0}, failed]
    path, data = earlier_file(tmp_path, rows)
    args = argparse.Namespace(clock="cpu", seed=0, quick=False, threads=1, concurrent=True)
    joined = bench.earlier_results([path], data, [5.0], args)
    assert [r["label"] for r in joined] == ["molequi molecule", "MACE 32:1"]  # other budget and failed runs left out
    assert all(r["earlier"] == str(path) for r in joined) and joined[0]["config"] == "/x/molecule.yaml"
    with pytest.raises(ValueError, match="clock is 'wall'"):
        bench.earlier_results([earlier_file(tmp_path, rows, clock="wall")[0]], data, [5.0], args)
    moved = {"3bpa": {**data["3bpa"], "val_source_indices": [4]}}
    with pytest.raises(ValueError, match="set 3bpa was split otherwise \\(val_source_indices differ\\)"):
        bench.earlier_results([path], moved, [5.0], args)
    table = bench.format_table(joined, {"3bpa": {"tests": {"mixedT": ""}, "frames": {"mixedT": 469}}})
    assert "| MACE 32:1 * (earlier run) |" in table and "**molequi molecule / MACE 32:1**" in table


def test_table_reports_a_failed_run():
    failed = {"set": "3bpa", "budget_min": 5.0, "code": "mace", "size": "32:1", "label": "MACE 32:1", "error": "RuntimeError: boom"}
    table = bench.format_table([run("molequi", "molequi", 5.0, 40.0), failed], {"3bpa": {"tests": {"mixedT": ""}, "frames": {"mixedT": 9}}})
    assert "MACE 32:1 | failed: RuntimeError: boom" in table and "molequi /" not in table


def test_epoch_seconds_are_read_from_molequis_epoch_line():
    from molequi.training.report import epoch_summary

    row = {"epoch": 7, "lr": 1e-3, "train_loss": 1.0, "val_loss": 2.0, "val_energy_per_atom_mae": 1e-3, "val_forces_mae": 0.05}
    for best in (True, False):
        match = bench.EPOCH_LINE.match(epoch_summary(row, 100, 12.34, best))
        assert match and float(match[1]) == pytest.approx(12.3)


def test_command_line_lists_are_checked():
    assert bench.parse_list("5, 15", "budgets") == [5.0, 15.0]
    assert bench.parse_list("3bpa,acac", "sets", list(bench.SETS)) == ["3bpa", "acac"]
    for text, kind, match in (("0,5", "budgets", "positive"), ("3bpa,md22", "sets", "unknown md22"), (" , ", "sets", "empty")):
        with pytest.raises(ValueError, match=match):
            bench.parse_list(text, kind, list(bench.SETS))


def test_mace_sizes_are_channels_and_max_l_or_hidden_irreps():
    assert worker.size_arguments("32:1") == ["--num_channels=32", "--max_L=1"]
    assert worker.size_arguments("64x0e + 64x1o") == ["--hidden_irreps=64x0e+64x1o"]
    for bad in ("32x0e+32x1o:1", "32", "big"):
        with pytest.raises(ValueError, match="CHANNELS:MAX_L"):
            worker.size_arguments(bad)


def test_mace_best_checkpoint_is_the_highest_epoch_saved(tmp_path):
    with pytest.raises(FileNotFoundError, match="before the first epoch"):
        worker.best_checkpoint(tmp_path)
    for name in ("mace_run-0_epoch-3.pt", "mace_run-0_epoch-12.pt", "notes.pt"):
        (tmp_path / name).write_bytes(b"")
    assert worker.best_checkpoint(tmp_path) == (tmp_path / "mace_run-0_epoch-12.pt", 12)


@pytest.mark.slow
@pytest.mark.skipif(not MACE_PYTHON.exists() or not (DATA / "3bpa").is_dir(), reason="needs the MACE venv and ../shared/data")
def test_quick_run_trains_and_scores_both_codes_on_the_same_frames(tmp_path):
    out = tmp_path / "acc.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "accuracy_budget.py"), "--quick", "--sets", "3bpa", "--budgets", "0.5",
        "--mace-sizes", "8:0", "--workdir", str(tmp_path / "work"), "--json", str(out),
    ]  # fmt: skip
    from torch.utils.cpp_extension import get_default_build_root

    # the machine's kernel build, if there is one, instead of a fresh build in the workdir (a minute)
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| 3bpa | 0.5 min | mixedT (30) | molequi molecule |" in proc.stdout and "**molequi molecule / MACE 8:0**" in proc.stdout
    assert (tmp_path / "work" / "warmup" / "molecule" / "model.pt").is_file()
    report = json.loads(out.read_text())
    assert {r["code"] for r in report["results"]} == {"molequi", "mace"}
    for r in report["results"]:
        assert r["epochs"] >= 1 and r["train_s"] <= 30 + max(r["epoch_s"]) and r["errors"]["mixedT"]["frames"] == 30
        assert 0 < r["errors"]["mixedT"]["forces_mae"] < r["errors"]["mixedT"]["forces_rmse"] and r["cpu_s"] > 0
    assert report["sets"]["3bpa"]["removed_overlap"] == {"mixedT": 31}


def test_mace_command_line_has_the_documented_settings_and_extra_options_last(tmp_path):
    import argparse

    args = argparse.Namespace(seed=3, workdir=tmp_path, dtype="float64", train="t.extxyz", valid="v.extxyz", model="ScaleShiftMACE",
                              size="32:1", batch_size=5, eval_batch_size=50)  # fmt: skip
    argv = worker.mace_arguments(args, "average", ["--forces_weight=100"])
    for option in ("--E0s=average", "--num_channels=32", "--max_L=1", "--correlation=3", "--loss=weighted",
                   "--forces_weight=1000.0", "--ema", "--amsgrad", "--batch_size=5", "--valid_file=v.extxyz"):  # fmt: skip
        assert option in argv
    assert argv[-1] == "--forces_weight=100"  # argparse keeps the last value: extra options win


def test_mace_epochs_follow_the_molequi_budget_rule():
    """EpochBudget: the epoch that would overrun is cut after the step that leaves a validation's time; the next is refused.

    A fake clock ticks one second per reading; an epoch function takes 10 steps of 2 readings each
    (the budget's own reading after each step included), then "validates" for 5 readings.
    """
    ticks = iter(range(10**6))
    clock = lambda: float(next(ticks))  # noqa: E731
    budget = worker.EpochBudget(budget_s=40.0, start=clock(), clock=clock)
    steps = []

    def epoch(data_loader, tag):
        for batch in data_loader:
            clock()  # the optimisation step
            steps.append((tag, batch))

    def run(tag):
        budget.run_epoch(epoch, data_loader=range(10), tag=tag)
        for _ in range(5):
            clock()  # MACE's validation and checkpoint

    run("first")
    assert [b for t, b in steps if t == "first"] == list(range(10)) and budget.cuts == []
    run("second")
    second = [b for t, b in steps if t == "second"]
    assert 0 < len(second) < 10 and budget.cuts == [(2, len(second))]
    assert budget.validation_s == pytest.approx(6.0)  # five validation readings and the epoch start's own
    with pytest.raises(worker.BudgetReached):
        run("third")
    assert len(budget.epoch_starts) == 2
