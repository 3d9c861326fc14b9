"""Smoke test of ``examples/nonlinearity_zoo.py``."""

from __future__ import annotations

import pytest
import torch

from molequi.testing import TOLERANCES


def test_zoo_main_prints_one_row_per_variant(load_example, capsys):
    zoo = load_example("nonlinearity_zoo")
    rows = zoo.main(["--batch", "8", "--repeats", "1"])

    assert [row.label for row in rows] == [variant.label for variant in zoo.VARIANTS]
    assert [row.exact for row in rows] == [True] * 5 + [False] * 2
    for row in rows:
        assert row.time_ms > 0
        if row.exact:
            assert row.error_float64 <= TOLERANCES[torch.float64], row
            assert row.error_float32 <= TOLERANCES[torch.float32], row
    default_grid, coarse_grid = rows[-2:]
    assert default_grid.error_float64 < 1e-6, "the default Fourier grid keeps the error of silu below 1e-6"
    assert coarse_grid.error_float64 > 1e-6, "aliasing of the non-polynomial Fourier activation should be visible"
    assert rows[0].irreps_in == "72x0e+72x0o"  # scalars only, as many components as the others

    lines = capsys.readouterr().out.strip().splitlines()
    assert "torch threads" in lines[0] and "load average" in lines[0]
    assert lines[1].startswith("| nonlinearity | irreps_in | exact |")
    assert len(lines) == 3 + len(zoo.VARIANTS)
    assert all(line.startswith("| ") and line.count("|") == 7 for line in lines[3:])


def test_zoo_help(load_example, capsys):
    zoo = load_example("nonlinearity_zoo")
    with pytest.raises(SystemExit) as exit_info:
        zoo.main(["--help"])
    assert exit_info.value.code == 0
    assert "--threads" in capsys.readouterr().out
