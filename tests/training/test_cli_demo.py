"""``molequi demo``: the kernel build is not part of the training's clock; all epochs run; early stops are flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from molequi.cli import main
from molequi.nn.conv import kernel
from molequi.training import TrainResult, cli_demo, load_config
from molequi.training.yaml_io import read_yaml


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Record the kernel build and the training (faked: it stops after 3 epochs) in order."""
    order: list[str] = []
    monkeypatch.setattr(kernel, "fused_kernel", lambda: order.append("kernel"))

    def fake_train(config, overwrite=False):
        order.append(f"train max_epochs={config.max_epochs}")
        metrics = {"energy_mae": 0.1, "energy_rmse": 0.2}
        return TrainResult(Path(config.output_dir), 3, 3, "early_stopping", metrics, metrics, 1.0)

    monkeypatch.setattr(cli_demo, "train", fake_train)
    return order


def test_kernel_is_built_before_the_training_starts(calls, tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), "--set", "max_epochs=7"]) == 0
    assert calls == ["kernel", "train max_epochs=7"]
    out = capsys.readouterr().out
    assert "demo finished: 3 epochs" in out and "note: stopped after 3 of 7 epochs" in out


def test_demo_config_runs_all_its_epochs(repository):
    raw = read_yaml(repository / "examples" / "configs" / "demo.yaml")
    config = load_config(raw)
    # no time budget: neither a stop nor a time-planned schedule that depends on the machine's speed
    assert config.max_minutes is None and config.early_stopping_patience is None
