"""Short training runs: exact resume, atomic checkpoints, model files across processes, stress, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from molequi.models import load_model
from molequi.training import Trainer, load_config, train
from molequi.training.history import read_metrics_csv
from molequi.training.state import load_checkpoint


def test_resume_continues_exactly(tiny_config, tmp_path):
    """Two epochs in one go equal one epoch, a stop, and a resumed second epoch (same metrics.csv, same model)."""
    optim = {"scheduler": "plateau", "plateau_patience": 0, "plateau_factor": 0.5}
    straight = load_config(tiny_config(output_dir=str(tmp_path / "straight"), max_epochs=2, optim=optim))
    train(straight)
    interrupted = tiny_config(output_dir=str(tmp_path / "resumed"), max_epochs=1, optim=optim)
    first = train(load_config(interrupted))
    assert first.epochs == 1 and len(read_metrics_csv(tmp_path / "resumed" / "metrics.csv")) == 1
    resumed = train(load_config(interrupted, ["max_epochs=2"]), resume=True)
    assert resumed.epochs == 2

    rows_straight = read_metrics_csv(tmp_path / "straight" / "metrics.csv")
    rows_resumed = read_metrics_csv(tmp_path / "resumed" / "metrics.csv")
    assert len(rows_straight) == 2 and rows_straight == rows_resumed  # bit for bit
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    json_a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    json_b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert json_a["test"] == json_b["test"] and json_a["best_epoch"] == json_b["best_epoch"]


def test_resume_refuses_changed_config_and_fresh_run_refuses_old_folder(tiny_config):
    raw = tiny_config(max_epochs=1)
    train(load_config(raw))
    with pytest.raises(ValueError, match=r"cannot resume.*model.num_layers: 1 -> 2"):
        train(load_config(raw, ["model.num_layers=2", "max_epochs=2"]), resume=True)
    with pytest.raises(FileExistsError, match="holds a previous run"):
        train(load_config(raw))
    assert train(load_config(raw), overwrite=True).epochs == 1


def test_checkpoint_survives_a_crash_mid_write(tiny_config, monkeypatch):
    raw = tiny_config(max_epochs=1, plots=True)
    result = train(load_config(raw))
    out = result.output_dir
    for name in ("model.pt", "checkpoint.pt", "metrics.csv", "metrics.json", "config.yaml",
                 "learning_curves.png", "parity_energy.png", "parity_forces.png"):  # fmt: skip
        assert (out / name).is_file(), name
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["progress"]["epoch"] == 1
    before = {name: (out / name).read_bytes() for name in ("model.pt", "checkpoint.pt")}

    def disk_full(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="simulated crash"):
        train(load_config(raw, ["max_epochs=3"]), resume=True)
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in before} == before  # old files untouched
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind
    assert load_checkpoint(out / "checkpoint.pt")["progress"]["epoch"] == 1
    assert train(load_config(raw, ["max_epochs=2"]), resume=True).epochs == 2  # and it resumes from there


def test_model_file_gives_identical_outputs_in_a_fresh_process(tiny_config, tmp_path, demo_data):
    trainer = Trainer(load_config(tiny_config(max_epochs=1)))
    result = trainer.run()
    model_path = result.output_dir / "model.pt"
    script = f"""
import torch
torch.set_num_threads(1)
from molequi.models import load_model
from molequi.training.data import read_dataset
from torch_geometric.data import Batch
model = load_model({str(model_path)!r}).eval()
data = read_dataset({str(demo_data)!r}, model.r_max, torch.float64, cache_dir={str(trainer.config.data.cache_dir)!r})
batch = Batch.from_data_list([data[i] for i in (0, 125, 219)])
out = model(batch)
torch.save({{"energy": out["energy"].detach(), "forces": out["forces"].detach()}}, {str(tmp_path / "fresh.pt")!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    fresh = torch.load(tmp_path / "fresh.pt", weights_only=True)

    from molequi.training.data import read_dataset
    from torch_geometric.data import Batch

    data = read_dataset(demo_data, 3.0, torch.float64, cache_dir=trainer.config.data.cache_dir)
    batch = Batch.from_data_list([data[i] for i in (0, 125, 219)])
    trained = trainer.ema.module  # the weights of epoch 1, the best and only epoch
    out = trained(batch)
    # another process may sum in another order: equal to 1e-12 (float64), not bit for bit
    torch.testing.assert_close(out["energy"].detach(), fresh["energy"], rtol=1e-12, atol=0)
    forces_scale = float(fresh["forces"].abs().max())
    torch.testing.assert_close(out["forces"].detach(), fresh["forces"], rtol=1e-12, atol=1e-12 * forces_scale)
    record = torch.load(model_path, weights_only=True)
    assert record["statistics"]["elements"] == [29, 79] and record["units"]["energy"] == "eV"
    assert {"molequi", "torch", "e3nn"} <= set(record["versions"])
    assert load_model(model_path).statistics == record["statistics"]


def write_periodic_frames(path: Path, count: int, with_forces: bool = True) -> None:
    """Rattled, strained 4-atom fcc Cu cells with EMT energy, forces and stress."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.set_cell(atoms.cell * (1 + 0.02 * rng.standard_normal()), scale_atoms=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "stress": atoms.get_stress()}
        if with_forces:
            results["forces"] = atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_stress_loss_on_periodic_data(tiny_config, tmp_path):
    path = tmp_path / "cu.extxyz"
    write_periodic_frames(path, 12)
    raw = tiny_config(data={"path": str(path), "train_size": 8, "val_size": 2}, loss={"stress_weight": 10.0}, max_epochs=1)
    result = train(load_config(raw))
    row = read_metrics_csv(result.output_dir / "metrics.csv")[0]
    assert {"train_stress_mae", "val_stress_rmse"} <= set(row)
    assert "stress_mae" in result.test_metrics and result.test_metrics["stress_mae"] > 0


def test_clear_errors_for_bad_data(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found: .*absent.xyz"):
        train(load_config(tiny_config(data={"path": str(tmp_path / "absent.xyz")})))
    path = tmp_path / "no_forces.extxyz"
    write_periodic_frames(path, 8, with_forces=False)
    with pytest.raises(ValueError, match="loss.forces_weight > 0 but the training data has no forces"):
        train(load_config(tiny_config(data={"path": str(path), "train_size": 4, "val_size": 2})))
    with pytest.raises(ValueError, match="do not fit"):
        train(load_config(tiny_config(data={"train_size": 300})))


def test_isolated_atom_energies_from_file_or_mapping(tiny_config, demo_data):
    isolated = demo_data.parent / "emt_isolated_atoms.extxyz"  # Cu 3.51 eV, Au 3.8 eV
    for source in (str(isolated), {"Cu": 3.51, 79: 3.8}):
        trainer = Trainer(load_config(tiny_config(data={"isolated_atoms": source})))
        assert trainer.statistics["atomic_energies_source"] == "given"
        assert trainer.statistics["atomic_energies"] == pytest.approx([3.51, 3.8])
        assert trainer.model.config["atomic_energies"] == pytest.approx({29: 3.51, 79: 3.8})


def test_time_budget_stops_after_an_epoch(tiny_config):
    result = train(load_config(tiny_config(max_epochs=5, max_minutes=1e-6)))
    assert (result.epochs, result.stop_reason) == (1, "max_minutes")
    assert set(result.test_metrics) >= {"energy_mae", "forces_mae", "forces_rmse"}


def test_time_budget_cuts_the_epoch_that_would_overrun(tiny_config, monkeypatch, caplog):
    """With max_minutes, an epoch ends at the step where only a validation's time is left, then the run stops.

    The budget clock is a fake one that ticks one second per reading (a reading or two per step), so
    an epoch of 12 steps takes ~25 "seconds": the first epoch fits the 40 s budget, the second is cut.
    """
    ticks = iter(range(10**6))
    monkeypatch.setattr("molequi.training.trainer.budget_clock", lambda name: lambda: float(next(ticks)))
    with caplog.at_level("INFO", logger="molequi.training.trainer"):
        result = train(load_config(tiny_config(max_epochs=5, max_minutes=40 / 60, batch_size=1)))
    assert (result.epochs, result.stop_reason) == (2, "max_minutes")
    cut = [r.getMessage() for r in caplog.records if "cut at step" in r.getMessage()]
    assert len(cut) == 1 and cut[0].startswith("epoch 2 cut at step") and cut[0].endswith("of 12: max_minutes leaves time only to validate")
    assert 35 <= result.wall_time_s <= 45  # the budget used up to about one validation, not one epoch short of it
