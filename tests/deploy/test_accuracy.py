"""The deploy-time and compile-time agreement check."""

from __future__ import annotations

import pytest
import torch

from molequi.deploy.accuracy import check_agreement, output_errors, tolerance_for


def test_errors_are_relative_to_the_larger_of_one_and_the_reference():
    f64 = torch.float64
    reference = {"energy": torch.tensor([-2000.0], dtype=f64), "forces": torch.tensor([[0.1, -0.2, 0.0]], dtype=f64)}
    candidate = {"energy": torch.tensor([-2000.002], dtype=f64), "forces": torch.tensor([[0.1, -0.2, 3e-6]], dtype=f64)}
    errors = output_errors(candidate, reference)
    assert errors["energy"] == pytest.approx(1e-6, rel=1e-3)
    assert errors["forces"] == pytest.approx(3e-6, rel=1e-3)


def test_an_output_beyond_the_tolerance_is_named():
    check_agreement({"energy": 1e-12, "forces": 1e-11}, tolerance_for(torch.float64), "the package")
    with pytest.raises(ValueError, match=r"the package differs .*forces 2\.00e-09"):
        check_agreement({"energy": 1e-12, "forces": 2e-9}, tolerance_for(torch.float64), "the package")
    with pytest.raises(ValueError, match="stress"):
        check_agreement({"stress": float("nan")}, 1.0, "the package")


def test_a_missing_or_misshapen_output_is_an_error():
    with pytest.raises(ValueError, match="'forces': shape"):
        output_errors({"forces": torch.zeros(3, 3)}, {"forces": torch.zeros(4, 3)})
