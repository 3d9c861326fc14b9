"""The example configs train as written (real data, shrunk models and sizes); slow: opt in with -m slow."""

from __future__ import annotations

import pytest

from molequi.cli import main
from molequi.training.history import read_metrics_csv

SHRINK = ["max_epochs=1", "model.num_layers=1", "model.hidden_irreps=8x0e+4x1o", "model.lmax=1", "progress_bar=false", "plots=false"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, sizes",
    [
        ("rmd17_aspirin.yaml", ["data.train_size=40", "data.val_size=10", "data.test_size=20"]),
        ("rmd17_ethanol.yaml", ["data.train_size=40", "data.val_size=10"]),
        ("qm9_u0.yaml", ["data.train_size=200", "data.val_size=50"]),
    ],
)
def test_example_config_trains(name, sizes, repository, shared_data, cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(repository)  # the configs name ../shared/data relative to the checkout
    overrides = [f"output_dir={tmp_path / 'run'}", f"data.cache_dir={cache_dir}", *SHRINK, *sizes]
    assert main(["train", f"examples/configs/{name}", *[a for o in overrides for a in ("--set", o)]]) == 0
    assert len(read_metrics_csv(tmp_path / "run" / "metrics.csv")) == 1


@pytest.mark.slow
def test_full_demo_command(tmp_path, cache_dir, capsys):
    """`molequi demo` as shipped: 60 epochs; about 2 minutes on two idle cores."""
    assert main(["demo", "--output", str(tmp_path / "demo"), "--set", f"data.cache_dir={cache_dir}", "--set", "progress_bar=false", "--set", "max_minutes=null"]) == 0
    assert "demo finished" in capsys.readouterr().out
    rows = read_metrics_csv(tmp_path / "demo" / "metrics.csv")
    assert rows[-1]["val_forces_mae"] < 0.03
