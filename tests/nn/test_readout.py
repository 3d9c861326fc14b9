"""Tests of the readouts: irreps attributes and reset_parameters (PyG contract)."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from e3nn import o3

from molequi.nn import DipoleReadout, ScalarReadout

IRREPS_IN = "6x0e+3x1o+2x2e"
BUILDERS: dict[str, Callable[[], torch.nn.Module]] = {
    "ScalarReadout": lambda: ScalarReadout(IRREPS_IN, hidden=8, num_outputs=2),
    "DipoleReadout": lambda: DipoleReadout(IRREPS_IN),
}


def _call(readout: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The readout on ``features [5, irreps_in.dim]`` (two graphs for the dipole)."""
    if isinstance(readout, DipoleReadout):
        pos = torch.linspace(-1.0, 1.0, 3 * len(features)).reshape(-1, 3)
        return readout(features, pos, torch.tensor([0, 0, 1, 1, 1]), 2)
    return readout(features)


def test_irreps_attributes_describe_input_and_output(float64):
    scalar, dipole = BUILDERS["ScalarReadout"](), BUILDERS["DipoleReadout"]()
    assert scalar.irreps_in == dipole.irreps_in == o3.Irreps(IRREPS_IN)
    assert scalar.irreps_out == o3.Irreps("2x0e")
    assert dipole.irreps_out == o3.Irreps("1x1o")
    features = o3.Irreps(IRREPS_IN).randn(5, -1)
    assert _call(scalar, features).shape == (5, scalar.irreps_out.dim)
    assert _call(dipole, features).shape == (2, dipole.irreps_out.dim)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reset_parameters_redraws_the_weights_like_a_fresh_construction(name, float64):
    torch.manual_seed(5)
    fresh = BUILDERS[name]()
    readout = BUILDERS[name]()
    theirs = dict(fresh.named_parameters())
    before = {n: p.detach().clone() for n, p in readout.named_parameters() if n.endswith("weight")}
    assert before
    readout.reset_parameters()
    assert all(not torch.equal(readout.get_parameter(n), weight) for n, weight in before.items())
    torch.manual_seed(5)
    readout.reset_parameters()
    assert all(torch.equal(p, theirs[n]) for n, p in readout.named_parameters())
    features = o3.Irreps(IRREPS_IN).randn(5, -1)
    torch.testing.assert_close(_call(readout, features), _call(fresh, features), atol=0, rtol=0)
