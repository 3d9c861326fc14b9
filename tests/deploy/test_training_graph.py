"""torch.compile of a training step: energy, forces and the weight gradients of a force loss equal eager training.

The graph tests share one compiled step on the ``aot_eager`` backend (aot_autograd's forward
and double-backward graphs, run without generated code; about half a minute to trace and
compile on a loaded 2-core machine); the inductor test is a slow one (minutes).
"""

from __future__ import annotations

import copy

import pytest
import torch
from deploy_systems import R_MAX, structure
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph
from molequi.deploy.accuracy import output_errors
from molequi.deploy.training_graph import CompiledTrainingStep
from molequi.nn.conv import EquivariantConv

TOLERANCE = 1e-10


def _batch(*names: str, seed: int = 0) -> Batch:
    """Rattled molecules as one PyG batch, float64, with random energy and force targets."""
    generator = torch.Generator().manual_seed(seed)
    graphs = [atoms_to_graph(structure(name, seed=seed), R_MAX, dtype=torch.float64) for name in names]
    batch = Batch.from_data_list(graphs)
    batch.energy_target = torch.randn(len(names), generator=generator, dtype=torch.float64)
    batch.forces_target = torch.randn(batch.pos.shape, generator=generator, dtype=torch.float64)
    return batch


def _loss(pred: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """Energy MSE (about a shifted total energy, so that the residual is O(1)) plus force MSE."""
    shift = pred["energy"].detach() + batch.energy_target
    return (pred["energy"] - shift).square().mean() + (pred["forces"] - batch.forces_target).square().mean()


def _weight_gradients(model: torch.nn.Module, pred: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    names, parameters = zip(*model.named_parameters())
    grads = torch.autograd.grad(_loss(pred, batch), parameters, allow_unused=True, materialize_grads=True)
    return dict(zip(names, grads))


def _max_errors(model: torch.nn.Module, step: CompiledTrainingStep, batch: Batch) -> dict[str, float]:
    """Relative errors of the compiled energy, forces and loss gradients against eager training (train mode)."""
    pred = step(batch)
    model.train()
    try:
        reference = model(batch, compute_forces=True)
    finally:
        model.eval()
    errors = output_errors({k: pred[k] for k in ("energy", "forces")}, reference)
    gradient_errors = output_errors(_weight_gradients(model, pred, batch), _weight_gradients(model, reference, batch))
    return {**errors, "gradients": max(gradient_errors.values())}


@pytest.fixture(scope="module")
def model(tiny_model):
    """A copy of the shared tiny model (the optimizer test changes its weights), default C++ convolutions."""
    return copy.deepcopy(tiny_model)


@pytest.fixture(scope="module")
def step(model):
    return CompiledTrainingStep(model, backend="aot_eager")


def test_one_graph_gives_eager_energies_forces_and_gradients_for_two_batch_sizes(model, step):
    first, second = _batch("CH3CH2OH", "C6H6"), _batch("CH4", "H2O", "C6H6", seed=1)
    assert first.pos.shape[0] != second.pos.shape[0] and first.num_graphs != second.num_graphs
    errors = _max_errors(model, step, first)
    assert max(errors.values()) <= TOLERANCE, errors
    with torch.compiler.set_stance("fail_on_recompile"):  # the second batch runs the same graph
        errors = _max_errors(model, step, second)
    assert max(errors.values()) <= TOLERANCE, errors
    assert len(step.compile_seconds) == 1
    assert all(seconds > 0 for seconds in step.compile_seconds.values())


def test_an_optimizer_step_through_the_graph_trains_the_live_model(model, step):
    batch = _batch("CH3CH2OH", "C6H6", seed=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pred = step(batch)  # compiles here when this test runs alone
    with torch.compiler.set_stance("fail_on_recompile"):
        optimizer.zero_grad(set_to_none=True)
        _loss(pred, batch).backward()
        optimizer.step()
        changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
        assert changed and all(model.get_parameter(name).grad is not None for name in changed)
        errors = _max_errors(model, step, batch)  # the next call reads the updated weights
    assert max(errors.values()) <= TOLERANCE, errors


def test_the_callers_model_keeps_its_backend_and_mode(tiny_model):
    backends = [m.backend for m in tiny_model.modules() if isinstance(m, EquivariantConv)]
    step = CompiledTrainingStep(tiny_model, backend="aot_eager")
    assert not tiny_model.training
    assert [m.backend for m in tiny_model.modules() if isinstance(m, EquivariantConv)] == backends
    assert all(m.backend == "torch" for m in step.force_field.model.modules() if isinstance(m, EquivariantConv))


def test_stress_is_refused_before_tracing(tiny_model):
    step = CompiledTrainingStep(tiny_model, backend="aot_eager")
    with pytest.raises(ValueError, match="energy and forces only"):
        step(_batch("CH4"), compute_stress=True)
    assert not step.compile_seconds


@pytest.mark.slow
def test_inductor_training_graph_equals_eager(tiny_model, capsys):
    """The real thing: inductor's C++ code for the forward and the double backward (minutes on a CPU)."""
    model = copy.deepcopy(tiny_model)
    step = CompiledTrainingStep(model)
    for batch in (_batch("CH3CH2OH", "C6H6"), _batch("CH4", "H2O", "C6H6", seed=1)):
        errors = _max_errors(model, step, batch)
        assert max(errors.values()) <= TOLERANCE, errors
    assert len(step.compile_seconds) == 1
    with capsys.disabled():
        print(f"\ninductor training-graph compile time (s): {next(iter(step.compile_seconds.values())):.1f}")
