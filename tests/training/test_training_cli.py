"""``molequi train`` and ``molequi evaluate`` from the command line (in process, through the dispatcher)."""

from __future__ import annotations

import json

import torch
import yaml

from molequi.cli import main


def test_train_then_evaluate_writes_json(tiny_config, tmp_path, demo_data, cache_dir, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    assert main(["train", str(config), "--set", "max_epochs=1", "--threads", "1"]) == 0
    model = tmp_path / "run" / "model.pt"
    out = capsys.readouterr().out
    assert "test errors of" in out and "forces" in out

    report = tmp_path / "errors.json"
    assert main(["evaluate", str(model), str(demo_data), "--json", str(report), "--cache-dir", str(cache_dir)]) == 0
    printed = capsys.readouterr().out
    assert "energy per atom" in printed and "220 frames" in printed
    errors = json.loads(report.read_text())
    assert {"energy_mae", "energy_rmse", "energy_per_atom_mae", "forces_mae", "forces_rmse"} <= set(errors)
    assert errors["frames"] == 220 and errors["units"]["forces"] == "eV/Angstrom"
    assert all(errors[k] > 0 for k in ("energy_mae", "forces_mae", "forces_rmse"))
    assert "hint" not in printed

    # energies read in the wrong unit (eV values taken as meV): a hint naming the option
    assert main(["evaluate", str(model), str(demo_data), "--energy-unit", "meV", "--cache-dir", str(cache_dir)]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint.startswith("hint: ") and "not in meV" in hint and "--energy-unit" in hint

    # the training checkpoint given as the model
    assert main(["evaluate", str(tmp_path / "run" / "checkpoint.pt"), str(demo_data), "--cache-dir", str(cache_dir)]) == 2
    assert "this is a training checkpoint (for --resume); use model.pt" in capsys.readouterr().err


def test_train_reports_a_misspelt_key(tiny_config, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config()).replace("max_epochs", "max_epoch"))
    assert main(["train", str(config)]) == 2
    assert "unknown key 'max_epoch'" in capsys.readouterr().err
    config.write_text(yaml.safe_dump(tiny_config()))
    assert main(["train", str(config), "--set", "data.train_size=many"]) == 2
    assert "data.train_size: expected int or float, got str 'many'" in capsys.readouterr().err


def test_evaluate_reports_missing_files(tmp_path, demo_data, capsys):
    assert main(["evaluate", str(tmp_path / "absent.pt"), str(demo_data)]) == 2
    assert "model file not found" in capsys.readouterr().err


def test_a_previous_run_names_resume_and_overwrite(tiny_config, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "holds a previous run" in err and "--resume" in err and "--overwrite" in err and err.count("\n") == 1


def test_cuda_on_a_cpu_only_torch(tiny_config, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config(device="cuda")))
    assert main(["train", str(config)]) == 2
    assert "CUDA is not available in this torch build" in capsys.readouterr().err
