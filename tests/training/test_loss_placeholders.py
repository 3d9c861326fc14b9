"""Loss and metrics leave out the zero placeholders of ``fill_missing`` datasets (``has_<target>`` False)."""

from __future__ import annotations

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from molequi.data import ASEDataset, keys
from molequi.training.config import LossConfig
from molequi.training.data import Splits, read_dataset
from molequi.training.loss import WeightedLoss, squared_errors
from molequi.training.metrics import MetricAccumulator

ALL_TERMS = LossConfig(energy_weight=3.0, forces_weight=7.0, stress_weight=11.0)


def _graph(n: int, real: dict[str, bool], generator: torch.Generator) -> Data:
    """A graph with random targets; a target flagged False is a zero placeholder, as ``fill_missing`` writes it."""
    data = Data(z=torch.ones(n, dtype=torch.long), pos=torch.randn(n, 3, generator=generator, dtype=torch.float64))
    shapes = {keys.ENERGY: (1,), keys.FORCES: (n, 3), keys.STRESS: (1, 3, 3)}
    for target, shape in shapes.items():
        value = torch.randn(*shape, generator=generator, dtype=torch.float64)
        data[target] = value if real[target] else torch.zeros_like(value)
        data[keys.availability_key(target)] = torch.tensor([real[target]])
    return data


def _prediction(batch: Batch) -> dict[str, torch.Tensor]:
    """A model output off the references everywhere (so placeholders would add errors)."""
    return {
        keys.ENERGY: 2 * batch[keys.ENERGY] + 1,
        keys.FORCES: 0.5 * batch[keys.FORCES] + 0.1,
        keys.STRESS: batch[keys.STRESS].reshape(-1, 3, 3) - 0.3,
    }


@pytest.fixture
def mixed():
    """Four graphs, each target real in some of them, and a prediction for the batch."""
    generator = torch.Generator().manual_seed(0)
    flags = [
        {keys.ENERGY: True, keys.FORCES: True, keys.STRESS: False},
        {keys.ENERGY: False, keys.FORCES: True, keys.STRESS: True},
        {keys.ENERGY: True, keys.FORCES: False, keys.STRESS: True},
        {keys.ENERGY: True, keys.FORCES: False, keys.STRESS: False},
    ]
    batch = Batch.from_data_list([_graph(n, f, generator) for n, f in zip([2, 5, 3, 4], flags)])
    return batch, _prediction(batch)


def _expected_loss(batch: Batch, pred: dict[str, torch.Tensor]) -> torch.Tensor:
    """The weighted MSEs over the real targets only, written out."""
    has_e, has_f, has_s = (batch[keys.availability_key(t)] for t in (keys.ENERGY, keys.FORCES, keys.STRESS))
    n_atoms = torch.bincount(batch.batch).to(torch.float64)
    energy = ((pred[keys.ENERGY] - batch[keys.ENERGY]) / n_atoms)[has_e]
    forces = (pred[keys.FORCES] - batch[keys.FORCES])[has_f[batch.batch]]
    stress = (pred[keys.STRESS] - batch[keys.STRESS])[has_s]
    return 3.0 * energy.square().mean() + 7.0 * forces.square().mean() + 11.0 * stress.square().mean()


def test_the_loss_leaves_placeholders_out(mixed):
    batch, pred = mixed
    loss = WeightedLoss(ALL_TERMS)(pred, batch)
    assert torch.allclose(loss, _expected_loss(batch, pred), rtol=1e-14, atol=0)


def test_a_batch_without_any_real_target_of_a_kind_adds_nothing(mixed):
    batch, pred = mixed
    batch[keys.availability_key(keys.STRESS)] = torch.zeros(batch.num_graphs, dtype=torch.bool)
    loss = WeightedLoss(ALL_TERMS)(pred, batch)
    with_stress_weight_0 = WeightedLoss(LossConfig(energy_weight=3.0, forces_weight=7.0))(pred, batch)
    assert torch.isfinite(loss) and torch.allclose(loss, with_stress_weight_0, rtol=1e-14, atol=0)


def test_shards_with_global_counts_of_real_targets_average_to_the_full_loss(mixed):
    """DDP: each process divides by the counts of real targets summed over all processes."""
    batch, pred = mixed
    loss_fn = WeightedLoss(ALL_TERMS)
    graphs = batch.to_data_list()
    shards = [Batch.from_data_list(graphs[r::2]) for r in range(2)]
    local = [torch.stack([c for _, c in squared_errors(_prediction(s), s, loss_fn.names).values()]) for s in shards]
    total = local[0] + local[1]
    losses = [loss_fn(_prediction(s), s, sum_counts=lambda _: total, world_size=2) for s in shards]
    assert torch.allclose((losses[0] + losses[1]) / 2, loss_fn(pred, batch), rtol=1e-14, atol=0)


def test_metrics_leave_placeholders_out(mixed):
    batch, pred = mixed
    metrics = MetricAccumulator()
    metrics.update(pred, batch)
    result = metrics.compute()
    has_e, has_f = batch[keys.availability_key(keys.ENERGY)], batch[keys.availability_key(keys.FORCES)]
    energy = (pred[keys.ENERGY] - batch[keys.ENERGY])[has_e]
    forces = (pred[keys.FORCES] - batch[keys.FORCES])[has_f[batch.batch]]
    assert result["energy_mae"] == pytest.approx(float(energy.abs().mean()), rel=1e-14)
    assert result["forces_rmse"] == pytest.approx(float(forces.square().mean().sqrt()), rel=1e-14)
    stress = (pred[keys.STRESS] - batch[keys.STRESS])[batch[keys.availability_key(keys.STRESS)]]
    assert result["stress_mae"] == pytest.approx(float(stress.abs().mean()), rel=1e-14)


def test_a_file_with_forces_on_some_frames_trains_only_on_those(tmp_path):
    """Through the Python API: ASEDataset(fill_missing=True) -> DataLoader -> loss, no zero forces fitted."""
    path = tmp_path / "mixed.extxyz"
    frames = []
    for k in range(4):
        atoms = ase.Atoms("H3", positions=[[0, 0, 0], [0.9, 0, 0], [0, 0.9 + 0.1 * k, 0]])
        forces = np.full((3, 3), 1.0 + k) if k % 2 else None
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - k, forces=forces)
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    dataset = ASEDataset(path, r_max=2.0, fill_missing=True, dtype=torch.float64, cache_dir=tmp_path / "cache")
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    pred = {keys.ENERGY: batch[keys.ENERGY], keys.FORCES: torch.zeros(batch.num_nodes, 3, dtype=torch.float64)}
    loss = WeightedLoss(LossConfig(energy_weight=1.0, forces_weight=1.0))(pred, batch)
    real = np.concatenate([np.full((3, 3), 1.0 + k) for k in (1, 3)])
    assert loss.item() == pytest.approx(float(np.square(real).mean()), rel=1e-14)  # zeros would halve it


def test_training_reads_mixed_files_with_flagged_placeholders(demo_data, cache_dir):
    """The demo file has stress on its 100 periodic frames only: kept, flagged, and not a loss target."""
    dataset = read_dataset(demo_data, 3.0, torch.float64, cache_dir=str(cache_dir))
    flags = torch.cat([g[keys.availability_key(keys.STRESS)] for g in dataset])
    assert len(dataset) == 220 and int(flags.sum()) == 100
    splits = Splits(dataset, dataset, dataset[:0], {"train": [], "val": [], "test": []})
    assert splits.has(keys.ENERGY) and splits.has(keys.FORCES) and not splits.has(keys.STRESS)
    assert Splits(dataset[flags], dataset, dataset[:0], {}).has(keys.STRESS)  # the periodic frames alone
