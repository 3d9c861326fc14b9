"""Training on a CUDA GPU: one optimiser step equals the CPU's (float64), and a run of the trainer."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from cuda_systems import CUDA, small_model
from torch_geometric.data import Batch

from molequi.data import ASEDataset
from molequi.training import load_config, train

pytestmark = CUDA
REPOSITORY = Path(__file__).resolve().parents[2]
DEMO = REPOSITORY / "datasets" / "demo" / "emt_cu.extxyz"


def _step(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """One Adam step on an energy + forces loss (forces kept differentiable: a second derivative); the loss."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = model(batch)
    energy_loss = ((out["energy"] - batch.energy) / batch.num_nodes).square().mean()
    loss = energy_loss + (out["forces"] - batch.forces).square().mean()
    loss.backward()
    optimizer.step()
    return loss.detach()


def test_a_training_step_on_the_gpu_equals_the_cpus():
    frames = ASEDataset(DEMO, r_max=3.0, index=":4", dtype=torch.float64)
    batch = Batch.from_data_list([frames[k] for k in range(4)])
    model = small_model(species=(29, 79))  # the demo data's Cu and Au
    cpu, gpu = copy.deepcopy(model), copy.deepcopy(model).cuda()
    loss_cpu, loss_gpu = _step(cpu, batch), _step(gpu, batch.to("cuda"))
    assert abs(float(loss_gpu) - float(loss_cpu)) <= 1e-10 * float(loss_cpu)
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        assert float((p_gpu.detach().cpu() - p_cpu.detach()).abs().max()) <= 1e-10, name


def test_the_trainer_runs_on_the_gpu(tmp_path):
    overrides = [
        f"data.path={DEMO}", "data.train_size=12", "data.val_size=4", "data.test_size=4",
        f"data.cache_dir={tmp_path / 'cache'}", "model.r_max=3.0", "model.num_layers=1",
        "model.hidden_irreps=4x0e+2x1o", "model.lmax=1", "model.radial_hidden=[8]", "model.readout_hidden=4",
        "max_epochs=2", "device=cuda", "dtype=float32", "batch_size=4", "progress_bar=false", "plots=false",
        f"output_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    result = train(load_config(REPOSITORY / "examples/configs/demo.yaml", overrides))
    assert result.epochs == 2 and (tmp_path / "run" / "model.pt").is_file()
    assert all(torch.isfinite(torch.tensor(v)) for v in result.test_metrics.values())
