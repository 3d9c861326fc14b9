"""Fixture: a tiny float64 potential shared by the deployment tests (tracing time grows with the layers)."""

from __future__ import annotations

import pytest
import torch
from deploy_systems import E0, R_MAX, SPECIES, TINY

from molequi.dtypes import default_dtype
from molequi.models import EquivariantPotential


@pytest.fixture(scope="package")
def tiny_model() -> EquivariantPotential:
    """One interaction block, gate nonlinearity, l <= 2, float64, eval mode."""
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        return EquivariantPotential(SPECIES, r_max=R_MAX, atomic_energies=E0, scale=0.7, shift=-0.2, **TINY).eval()
