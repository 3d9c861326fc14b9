"""Loss terms, metrics and evaluation of the QM9 molecular targets: the dipole norm (Debye) and an intensive target."""

from __future__ import annotations

import pytest
import torch
from ase import units
from torch_geometric.data import Batch, Data

from molequi.data import keys
from molequi.training.config import ConfigError, LossConfig
from molequi.training.evaluate import evaluate
from molequi.training.loss import DIPOLE_NORM, INTENSIVE, WeightedLoss, squared_errors
from molequi.training.metrics import MetricAccumulator

SIZES = (3, 5, 2, 4)


def _batch(flags: tuple[bool, ...] | None = None) -> Batch:
    """Graphs with random dipole-norm and intensive targets (``has_<target>`` flags when given)."""
    generator = torch.Generator().manual_seed(1)
    graphs = []
    for k, n in enumerate(SIZES):
        graph = Data(z=torch.full((n,), 6), pos=torch.randn(n, 3, generator=generator, dtype=torch.float64))
        graph[DIPOLE_NORM] = 3 * torch.rand(1, generator=generator, dtype=torch.float64)
        graph[INTENSIVE] = 7 + torch.randn(1, generator=generator, dtype=torch.float64)
        if flags is not None:
            graph[keys.availability_key(DIPOLE_NORM)] = torch.tensor([flags[k]])
            graph[keys.availability_key(INTENSIVE)] = torch.tensor([flags[k]])
        graphs.append(graph)
    return Batch.from_data_list(graphs)


def _prediction(batch: Batch) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    num = batch.num_graphs
    return {
        keys.ENERGY: torch.zeros(num, dtype=torch.float64),
        "dipole": torch.randn(num, 3, generator=generator, dtype=torch.float64),  # e Å
        INTENSIVE: 7 + torch.randn(num, generator=generator, dtype=torch.float64),
    }


def test_dipole_and_intensive_terms_are_the_mse_of_the_norm_in_debye_and_of_the_target():
    batch = _batch()
    pred = _prediction(batch)
    mu_debye = pred["dipole"].norm(dim=1) / units.Debye  # 1 e Å = 4.8032 D
    expected_mu = (mu_debye - batch[DIPOLE_NORM]).square().mean()
    expected_gap = (pred[INTENSIVE] - batch[INTENSIVE]).square().mean()
    loss = WeightedLoss(LossConfig(energy_weight=0.0, forces_weight=0.0, dipole_weight=3.0, intensive_weight=5.0))
    assert torch.allclose(loss(pred, batch), 3 * expected_mu + 5 * expected_gap, rtol=1e-14, atol=0)
    metrics = MetricAccumulator()
    metrics.update(pred, batch)
    result = metrics.compute()
    assert result["dipole_norm_mae"] == pytest.approx(float((mu_debye - batch[DIPOLE_NORM]).abs().mean()), rel=1e-12)
    assert result["intensive_rmse"] == pytest.approx(float(expected_gap.sqrt()), rel=1e-12)
    assert loss.from_mse({k.removesuffix("_mse"): v for k, v in result.items() if k.endswith("_mse")}) == pytest.approx(
        float(3 * expected_mu + 5 * expected_gap), rel=1e-12
    )
    assert "energy_mae" not in result  # the batch has no energy: no energy metrics


def test_placeholder_molecular_targets_are_left_out():
    flags = (True, False, True, False)
    batch, real = _batch(flags), torch.tensor(flags)
    pred = _prediction(batch)
    terms = squared_errors(pred, batch, (DIPOLE_NORM, INTENSIVE))
    diff = (pred[INTENSIVE] - batch[INTENSIVE])[real]
    assert torch.allclose(terms[INTENSIVE][0], diff.square().sum(), rtol=1e-14, atol=0)
    assert terms[INTENSIVE][1].item() == terms[DIPOLE_NORM][1].item() == 2
    metrics = MetricAccumulator()
    metrics.update(pred, batch)
    assert metrics.compute()["intensive_mae"] == pytest.approx(float(diff.abs().mean()), rel=1e-12)


@pytest.mark.parametrize(
    "weights, drop, message",
    [
        ({"dipole_weight": 1.0}, "target", "loss.dipole_weight > 0 but the data has no dipole_norm target"),
        ({"dipole_weight": 1.0}, "output", "loss.dipole_weight > 0 but the model has no dipole output .*model.dipole"),
        ({"intensive_weight": 1.0}, "output", "loss.intensive_weight > 0 but the model has no intensive output .*model.intensive"),
        ({"energy_weight": 1.0}, "target", "loss.energy_weight > 0 but the data has no energy target"),
    ],
)
def test_a_term_without_its_target_or_output_names_the_weight(weights, drop, message):
    batch = _batch()
    pred = _prediction(batch)
    key = {"dipole_weight": DIPOLE_NORM, "intensive_weight": INTENSIVE, "energy_weight": keys.ENERGY}[next(iter(weights))]
    if drop == "target" and key in batch:
        del batch[key]
    if drop == "output":
        pred.pop("dipole" if key == DIPOLE_NORM else key)
    loss = WeightedLoss(LossConfig(**{"energy_weight": 0.0, "forces_weight": 0.0, **weights}))
    with pytest.raises(ValueError, match=message):
        loss(pred, batch)


def test_loss_config_counts_the_molecular_weights():
    assert LossConfig(energy_weight=0.0, forces_weight=0.0, dipole_weight=1.0).final().dipole_weight == 1.0
    staged = LossConfig(energy_weight=0.0, forces_weight=0.0, intensive_weight=2.0, final_stage=0.5, final_energy_weight=0.0)
    assert staged.final().intensive_weight == 2.0  # the final stage keeps the property terms
    with pytest.raises(ConfigError, match="all weights are zero"):
        LossConfig(energy_weight=0.0, forces_weight=0.0)
    with pytest.raises(ConfigError, match="loss.dipole_weight: must be non-negative"):
        LossConfig(dipole_weight=-1.0)


class _Molecular(torch.nn.Module):
    """A stand-in model: dipole = sum of positions, intensive = mean x coordinate (no energy target in the data)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, batch, compute_forces=False, compute_stress=False):
        num = batch.num_graphs
        dipole = torch.zeros(num, 3, dtype=torch.float64).index_add(0, batch.batch, batch.pos) * self.weight
        count = torch.bincount(batch.batch, minlength=num).to(torch.float64)
        mean_x = torch.zeros(num, dtype=torch.float64).index_add(0, batch.batch, batch.pos[:, 0]) / count
        return {keys.ENERGY: torch.zeros(num, dtype=torch.float64), "dipole": dipole, INTENSIVE: mean_x}


def test_evaluate_without_energies_reports_the_molecular_targets():
    graphs = _batch().to_data_list()
    accumulator, predictions = evaluate(_Molecular(), graphs, batch_size=3, collect=True)
    metrics = accumulator.compute()
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        pred = _Molecular()(batch)
    mu = pred["dipole"].norm(dim=1) / units.Debye
    assert metrics["dipole_norm_mae"] == pytest.approx(float((mu - batch[DIPOLE_NORM]).abs().mean()), rel=1e-12)
    assert metrics["intensive_mae"] == pytest.approx(float((pred[INTENSIVE] - batch[INTENSIVE]).abs().mean()), rel=1e-12)
    assert predictions.energy_per_atom[0].size == 0 and "energy_mae" not in metrics
