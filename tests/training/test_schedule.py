"""The learning-rate schedule planned in time, its resume, and the final-stage loss weights."""

from __future__ import annotations

import math

import pytest
import torch

from molequi.training import load_config, train
from molequi.training.config import ConfigError, LossConfig, OptimConfig
from molequi.training.schedule import LearningRateSchedule


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_budgeted_cosine_reaches_min_lr_when_the_time_runs_out():
    config = OptimConfig(lr=0.01, min_lr=1e-5, scheduler="cosine", warmup_epochs=0)
    schedule = LearningRateSchedule(_optimizer(), config, steps_per_epoch=10, max_epochs=1000, max_minutes=2.0)
    schedule.step(elapsed_s=60.0)  # half of the 120 s budget, whatever the step count
    assert schedule.lr == pytest.approx(1e-5 + (0.01 - 1e-5) * 0.5)
    schedule.step(elapsed_s=119.999)
    assert schedule.lr == pytest.approx(1e-5, rel=1e-3)
    schedule.step(elapsed_s=500.0)
    assert schedule.lr == 1e-5 and schedule.optimizer.param_groups[0]["lr"] == 1e-5
    with pytest.raises(ValueError, match="elapsed training time"):
        schedule.step()


def test_resume_continues_the_original_plan():
    """A resumed cosine with a new max_epochs keeps its curve (it used to restart)."""
    config = OptimConfig(lr=0.01, min_lr=0.0, scheduler="cosine", warmup_epochs=0)
    first = LearningRateSchedule(_optimizer(), config, steps_per_epoch=10, max_epochs=10)
    for _ in range(50):
        first.step()
    assert first.lr == pytest.approx(0.005)
    resumed = LearningRateSchedule(_optimizer(), config, steps_per_epoch=10, max_epochs=40)
    resumed.load_state_dict(first.state_dict())
    assert resumed.lr == pytest.approx(0.005)
    for _ in range(50):
        first.step()
        resumed.step()
    assert resumed.lr == first.lr == pytest.approx(0.0, abs=1e-12)
    budgeted = LearningRateSchedule(_optimizer(), config, steps_per_epoch=10, max_epochs=10, max_minutes=1.0)
    budgeted.step(elapsed_s=15.0)
    again = LearningRateSchedule(_optimizer(), config, steps_per_epoch=10, max_epochs=10, max_minutes=5.0)
    again.load_state_dict(budgeted.state_dict())
    assert again.plan["budget_s"] == 60.0 and again.lr == pytest.approx(budgeted.lr)
    again.step(elapsed_s=30.0)
    assert again.lr == pytest.approx(0.005)


def test_final_stage_weights():
    loss = LossConfig(energy_weight=1.0, forces_weight=100.0, final_stage=0.7, final_energy_weight=1000.0)
    final = loss.final()
    assert (final.energy_weight, final.forces_weight, final.final_stage) == (1000.0, 100.0, None)
    with pytest.raises(ConfigError, match="final_stage"):
        LossConfig(final_energy_weight=10.0)
    with pytest.raises(ConfigError, match="loss.final_stage"):
        LossConfig(final_stage=1.5)


def test_training_enters_the_final_stage_and_keeps_its_best_model(tiny_config):
    raw = tiny_config(
        loss={"energy_weight": 1.0, "forces_weight": 10.0, "final_stage": 0.5, "final_energy_weight": 100.0},
        optim={"scheduler": "cosine", "min_lr": 1e-4},
        max_epochs=4,
    )
    result = train(load_config(raw))
    import json

    metrics = json.loads((result.output_dir / "metrics.json").read_text())
    assert result.epochs == 4
    # the best model is chosen among the final-stage epochs (3 and 4: the best loss restarted there)
    assert metrics["best_epoch"] >= 3
    assert math.isfinite(metrics["val"]["loss"])



def test_cpu_clock_budget(tiny_config):
    """budget_clock: cpu counts this process's CPU time (other jobs on the machine do not change it)."""
    import time

    from molequi.training.trainer import budget_clock

    assert budget_clock("cpu") is time.process_time and budget_clock("wall") is time.perf_counter
    result = train(load_config(tiny_config(max_epochs=5, max_minutes=1e-6, budget_clock="cpu")))
    assert (result.epochs, result.stop_reason) == (1, "max_minutes")
