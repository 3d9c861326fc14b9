"""The EMA copy of a model: an independent model with the same state-dict keys."""

from __future__ import annotations

import torch


def test_ema_of_a_tensor_product_model_keeps_the_state_dict():
    """deepcopy of e3nn's compiled tensor products adds buffers: the EMA copy is rebuilt instead."""
    from molequi.models import EquivariantPotential
    from molequi.training.ema import ExponentialMovingAverage

    model = EquivariantPotential([1, 8], hidden_irreps="4x0e+4x1o", num_layers=2, lmax=1, nonlinearity="tensor_product")
    ema = ExponentialMovingAverage(model, 0.9)
    assert ema.module.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    assert not torch.equal(next(ema.module.parameters()), next(model.parameters()))
