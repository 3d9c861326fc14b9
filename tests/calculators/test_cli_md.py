"""The ``molequi md`` sub-command: trajectory, log and energy drift."""

from __future__ import annotations

import argparse

import ase.io
import numpy as np
import pytest
import torch
from calc_systems import cu_cluster

from molequi import cli
from molequi.calculators import cli_md
from molequi.calculators.md import energy_drift
from molequi.models import save_model


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_md.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def inputs(trained_model, tmp_path):
    save_model(trained_model, tmp_path / "model.pt")
    ase.io.write(tmp_path / "start.xyz", cu_cluster(rattle=0.02))
    return tmp_path


@pytest.mark.parametrize("ensemble, out", [("nve", "run.traj"), ("langevin", "run.extxyz")])
def test_md_writes_trajectory_log_and_drift(inputs, capsys, ensemble, out):
    argv = [str(inputs / "model.pt"), str(inputs / "start.xyz"), "--ensemble", ensemble, "--steps", "20"]
    argv += ["--interval", "5", "--timestep", "1.0", "--out", str(inputs / out), "--no-progress"]
    assert cli_md.run(_parse(argv)) == 0
    frames = ase.io.read(inputs / out, ":")
    assert len(frames) == 5 and np.isfinite(frames[-1].get_forces()).all()
    log = (inputs / out).with_suffix(".log").read_text().splitlines()
    assert log[0].split()[0] == "Time[ps]" and len(log) == 6
    printed = capsys.readouterr().out
    assert ("energy drift:" in printed) == (ensemble == "nve")
    assert not list(inputs.glob(".*.tmp"))  # temporary files were renamed into place


def test_md_reports_bad_input(inputs, capsys, monkeypatch):
    atoms = cu_cluster()
    atoms.numbers[0] = 47
    ase.io.write(inputs / "gold.xyz", atoms)
    monkeypatch.chdir(inputs)
    before = sorted(p.name for p in inputs.iterdir())
    assert cli_md.run(_parse([str(inputs / "model.pt"), str(inputs / "gold.xyz"), "--no-progress"])) == 2
    assert "Ag" in capsys.readouterr().err
    assert sorted(p.name for p in inputs.iterdir()) == before  # no trajectory or log left behind


def test_missing_files_and_unusable_devices_exit_2_with_one_line(inputs, capsys, monkeypatch):
    model, start = str(inputs / "model.pt"), str(inputs / "start.xyz")
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only torch build, whatever this one is
    cases = [
        ([model, str(inputs / "absent.xyz")], "structure file not found: "),
        ([str(inputs / "absent.pt"), start], "model file not found: "),
        ([model, model], "not a structure file ASE can read"),
        ([model, start, "--device", "cuda"], "CUDA is not available in this torch build"),
        ([model, start, "--threads", "0"], "--threads must be positive"),
    ]
    for argv, message in cases:
        assert cli.main(["md", *argv, "--out", str(inputs / "x.traj"), "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("molequi md: error: ") and message in err and err.count("\n") == 1, err
        assert "Errno" not in err
    assert not (inputs / "x.traj").exists()


def test_no_progress_bar_when_stderr_is_not_a_terminal(inputs, capsys):
    argv = [str(inputs / "model.pt"), str(inputs / "start.xyz"), "--steps", "10", "--interval", "5"]
    assert cli_md.run(_parse([*argv, "--out", str(inputs / "run.traj")])) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out and "10 steps of nve MD" in captured.out


def test_registered_with_the_dispatcher():
    assert cli.COMMANDS["md"][0] == "molequi.calculators.cli_md"
    assert cli_md.__doc__.strip().splitlines()[0]


def test_energy_drift_is_a_linear_fit():
    time_ps = np.linspace(0.0, 2.0, 11)
    total = -5.0 + 0.003 * time_ps + 1e-4 * np.sin(7 * time_ps)  # eV
    assert energy_drift(time_ps, total, num_atoms=3) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        energy_drift(time_ps[:1], total[:1], 3)
