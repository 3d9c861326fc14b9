"""Inference on a CUDA GPU: the calculator, torch.compile (inductor, Triton) and a deployed package."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule
from cuda_systems import CUDA, small_model

from molequi.calculators import MolequiCalculator
from molequi.deploy import compile_potential, deploy
from molequi.deploy.export import graph_inputs

pytestmark = CUDA
GPU = torch.device("cuda")


def _molecules():
    for name in ("CH3CH2OH", "C6H6"):
        atoms = molecule(name)
        atoms.rattle(0.05, seed=0)
        yield atoms


def test_calculator_on_the_gpu_equals_the_cpu():
    model = small_model()
    for atoms in _molecules():
        cpu, gpu = atoms.copy(), atoms.copy()
        cpu.calc, gpu.calc = MolequiCalculator(model), MolequiCalculator(model, device="cuda")
        assert abs(gpu.get_potential_energy() - cpu.get_potential_energy()) < 1e-10
        assert np.abs(gpu.get_forces() - cpu.get_forces()).max() < 1e-10


def test_compiled_on_the_gpu_equals_eager(capsys):
    model = small_model().to(GPU)
    compiled = compile_potential(model)
    for atoms in _molecules():
        data = graph_inputs(atoms, model.r_max, torch.float64, GPU)
        out, reference = compiled(data), model(data)
        assert float((out["forces"] - reference["forces"]).abs().max()) <= 1e-10
        scale = max(1.0, float(reference["energy"].abs().max()))
        assert float((out["energy"] - reference["energy"]).abs().max()) <= 1e-10 * scale
    assert len(compiled.compile_seconds) == 1  # both molecules through one graph
    with capsys.disabled():
        print(f"\nCUDA inductor compile: {next(iter(compiled.compile_seconds.values())):.1f} s")


def test_deployed_package_on_the_gpu(tmp_path, capsys):
    report = deploy(small_model(), tmp_path / "gpu.pt2", device="cuda")
    with capsys.disabled():
        print(f"\nCUDA deploy: {report.seconds}; errors {report.errors}")
    model = small_model()
    for atoms in _molecules():
        eager, deployed = atoms.copy(), atoms.copy()
        eager.calc = MolequiCalculator(model, device="cuda")
        deployed.calc = MolequiCalculator(tmp_path / "gpu.pt2", device="cuda")
        assert np.abs(deployed.get_forces() - eager.get_forces()).max() < 1e-10
    with pytest.raises(ValueError, match="compiled for cuda"):
        MolequiCalculator(tmp_path / "gpu.pt2", device="cpu")
