"""Tests of the interaction block: the warning for inexact nonlinearities and reset_parameters."""

from __future__ import annotations

import warnings

import pytest
import torch

from molequi.nn import InteractionBlock, nonlinearities
from molequi.testing import equivariance_error

IRREPS_OUT = "4x0e+4x1o+4x2e"


def _block(nonlinearity: str = "gate", **options) -> InteractionBlock:
    irreps_out = "6x0e" if nonlinearity == "scalar" else IRREPS_OUT
    return InteractionBlock(
        "4x0e", irreps_out, nonlinearity=nonlinearity, nonlinearity_options=options, irreps_node_attr="2x0e", r_max=3.0
    )


@pytest.mark.parametrize("resolution, largest_error", [(None, 1e-6), (12, 1.0)])
def test_inexact_nonlinearity_warns_with_its_measured_error(resolution, largest_error, float64):
    options = {} if resolution is None else {"resolution": resolution}
    with pytest.warns(UserWarning, match="fourier nonlinearity is not exactly O\\(3\\)-equivariant") as record:
        _block("fourier", **options)
    (warning,) = record
    message = str(warning.message)
    assert "act='silu'" in message and "resolution=" in message and "degree=" in message
    error = float(message.split("error ")[1].split()[0])
    act = nonlinearities.build("fourier", IRREPS_OUT, **options)
    measured = equivariance_error(act, act.irreps_in, act.irreps_out, generator=torch.Generator().manual_seed(0))
    assert error == pytest.approx(measured, rel=0.1)  # the layer's measured error (printed to 2 digits)
    assert error < largest_error


@pytest.mark.parametrize("name", sorted(nonlinearities.FAMILIES))
def test_exact_nonlinearities_do_not_warn(name, float64):
    options = {"act": lambda x: x * x, "degree": 2} if name == "fourier" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _block(name, **options)


def _perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.requires_grad:
                parameter.add_(0.3 * torch.randn_like(parameter) + 0.1)


@pytest.mark.parametrize("name", ["gate", "norm", "tensor_product"])
def test_reset_parameters_redraws_every_weight_like_a_fresh_block(name, float64):
    torch.manual_seed(3)
    fresh = _block(name)
    block = _block(name)
    _perturb(block)
    perturbed = {n: p.detach().clone() for n, p in block.named_parameters() if p.requires_grad and p.numel()}
    block.reset_parameters()
    assert all(not torch.equal(block.get_parameter(n), value) for n, value in perturbed.items())
    theirs = dict(fresh.named_parameters())
    torch.manual_seed(3)
    block.reset_parameters()
    for n, p in block.named_parameters():
        assert torch.equal(p, theirs[n]), n
    x = torch.randn(5, block.irreps_in.dim)
    node_attr = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).to(x.dtype)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 1], [1, 0, 3, 2, 0, 4]])
    pos = torch.randn(5, 3)
    torch.testing.assert_close(block(x, pos, edge_index, node_attr), fresh(x, pos, edge_index, node_attr), atol=0, rtol=0)
