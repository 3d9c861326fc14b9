"""Models follow PyG's reset_parameters contract: weights re-drawn as at construction, references kept."""

from __future__ import annotations

import torch

from molequi.models import EquivariantPotential

SMALL = {"hidden_irreps": "8x0e+4x1o", "num_layers": 2, "lmax": 1, "radial_hidden": (8,), "readout_hidden": 4}


def test_reset_parameters_redraws_every_weight_like_a_fresh_model():
    torch.manual_seed(1)
    fresh = EquivariantPotential([1, 8], atomic_energies={1: -13.6, 8: -2041.9}, **SMALL)
    torch.manual_seed(2)
    model = EquivariantPotential([1, 8], atomic_energies={1: -13.6, 8: -2041.9}, **SMALL)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    torch.manual_seed(1)
    model.reset_parameters()
    for (name, a), b in zip(model.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert model.energy_head.atomic_energies.tolist() == [-13.6, -2041.9]
