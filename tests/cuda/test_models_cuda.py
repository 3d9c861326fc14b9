"""Models on a CUDA GPU: O(3) symmetry, finite-difference derivatives in float64, CPU/GPU agreement."""

from __future__ import annotations

import copy

import pytest
import torch
from cuda_systems import CUDA, ethanol, on_device, salt_crystal, small_model

from molequi.dtypes import default_dtype
from molequi.models import NBodyNetwork
from molequi.testing import finite_difference_force_error, finite_difference_stress_error, model_equivariance_errors

pytestmark = CUDA
GPU = torch.device("cuda")


@pytest.mark.parametrize("nonlinearity", ["gate", "norm", "tensor_product"])
def test_equivariant_on_the_gpu(nonlinearity):
    model = on_device(small_model(nonlinearity=nonlinearity, hidden_irreps="4x0e+4x1o+4x2e"), GPU)
    for structure in (ethanol(), salt_crystal()):
        errors = model_equivariance_errors(model, structure, generator=torch.Generator().manual_seed(0))
        assert max(errors.values()) < 1e-10, errors


def test_forces_and_stress_match_finite_differences_float64_on_the_gpu():
    model = on_device(small_model(), GPU)
    assert finite_difference_force_error(model, ethanol()) < 1e-7
    assert finite_difference_stress_error(model, salt_crystal()) < 1e-7


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_cpu_and_gpu_agree(dtype, tolerance):
    model = small_model(dtype)
    cpu, gpu = on_device(copy.deepcopy(model), torch.device("cpu")), on_device(model, GPU)
    for structure, stress in ((ethanol(dtype), False), (salt_crystal(dtype), True)):
        expected, got = cpu(structure, compute_stress=stress), gpu(structure, compute_stress=stress)
        for name in ("energy", "forces", "stress") if stress else ("energy", "forces"):
            scale = max(1.0, float(expected[name].abs().max()))
            assert float((got[name] - expected[name]).abs().max()) <= tolerance * scale, name


def test_nbody_network_cpu_and_gpu_agree():
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        model = NBodyNetwork([1, 6, 8], r_max=3.0).eval()
    cpu, gpu = on_device(copy.deepcopy(model), torch.device("cpu")), on_device(model, GPU)
    expected, got = cpu(ethanol()), gpu(ethanol())
    scale = max(1.0, float(expected["energy"].abs().max()))
    assert float((got["energy"] - expected["energy"]).abs().max()) <= 1e-10 * scale
    assert float((got["forces"] - expected["forces"]).abs().max()) <= 1e-10
