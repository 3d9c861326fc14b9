"""Loss, learning-rate schedule and EMA in isolation."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data

from molequi.training.config import LossConfig, OptimConfig
from molequi.training.ema import ExponentialMovingAverage
from molequi.training.loss import WeightedLoss
from molequi.training.schedule import LearningRateSchedule


def graphs(sizes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        Data(z=torch.ones(n, dtype=torch.long), pos=torch.randn(n, 3, generator=generator, dtype=torch.float64),
             energy=torch.randn(1, generator=generator, dtype=torch.float64),
             forces=torch.randn(n, 3, generator=generator, dtype=torch.float64))
        for n in sizes
    ]  # fmt: skip


def fake_prediction(batch: Batch) -> dict[str, torch.Tensor]:
    return {"energy": 2 * batch.energy + 1, "forces": 0.5 * batch.forces + 0.1}


def test_loss_is_per_atom_energy_mse_plus_force_mse():
    batch = Batch.from_data_list(graphs([2, 5, 3]))
    pred = fake_prediction(batch)
    n_atoms = torch.tensor([2.0, 5.0, 3.0], dtype=torch.float64)
    expected = 3.0 * ((pred["energy"] - batch.energy) / n_atoms).square().mean() + 7.0 * (pred["forces"] - batch.forces).square().mean()
    loss = WeightedLoss(LossConfig(energy_weight=3.0, forces_weight=7.0))(pred, batch)
    assert torch.allclose(loss, expected, rtol=1e-14, atol=0)


def test_loss_shards_with_global_counts_average_to_the_full_loss():
    """What DDP relies on: the mean over processes of ``world * local_sum / global_count`` is the global loss."""
    data = graphs([2, 7, 3, 4, 1, 6])
    loss_fn = WeightedLoss(LossConfig(energy_weight=2.0, forces_weight=5.0))
    full_batch = Batch.from_data_list(data)
    full = loss_fn(fake_prediction(full_batch), full_batch)
    shards = [Batch.from_data_list(data[r::2]) for r in range(2)]
    local_counts = [torch.tensor([float(s.num_graphs), 3.0 * s.num_nodes], dtype=torch.float64) for s in shards]
    total = local_counts[0] + local_counts[1]
    losses = [loss_fn(fake_prediction(s), s, sum_counts=lambda _: total, world_size=2) for s in shards]
    assert torch.allclose((losses[0] + losses[1]) / 2, full, rtol=1e-14, atol=0)


def test_warmup_then_cosine():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    config = OptimConfig(lr=0.1, warmup_epochs=1, scheduler="cosine", min_lr=0.001)
    schedule = LearningRateSchedule(optimizer, config, steps_per_epoch=4, max_epochs=5)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    halfway = 4 + 8
    assert lrs[halfway] == pytest.approx(0.001 + 0.099 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_plateau_decay_and_state_round_trip():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    config = OptimConfig(lr=0.1, scheduler="plateau", plateau_factor=0.5, plateau_patience=2)
    schedule = LearningRateSchedule(optimizer, config, steps_per_epoch=3, max_epochs=10)
    for loss in (1.0, 0.9, 0.95, 0.95):  # two epochs without improvement: still patient
        schedule.epoch_end(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    schedule.epoch_end(0.95)  # the third: halve
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    copy = LearningRateSchedule(torch.optim.SGD([parameter], lr=1.0), config, steps_per_epoch=3, max_epochs=10)
    copy.load_state_dict(schedule.state_dict())
    assert copy.lr == schedule.lr and copy.state_dict() == schedule.state_dict()


def test_ema_follows_with_warmed_up_decay():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ExponentialMovingAverage(model, decay=0.99)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.99, 2/11)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 1 - 2 / 11))
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    other = ExponentialMovingAverage(model, decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1 and torch.equal(other.module.weight, ema.module.weight)
