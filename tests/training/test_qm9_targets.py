"""QM9 targets in training: energies with QM9's atom references, mu through the dipole head, the gap pooled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from molequi.data import keys
from molequi.data.datasets.qm9 import atomref
from molequi.data.units import HARTREE
from molequi.models import load_model
from molequi.training import load_config, train
from molequi.training.config import DataConfig
from molequi.training.data import qm9_dataset, reference_energies, target_key
from molequi.training.loss import DIPOLE_NORM, INTENSIVE

MOLECULES = 40


@pytest.fixture
def small_npz(shared_data, tmp_path):
    """The first 40 molecules of the 25k subset without fluorine (so that any split has every element in training)."""
    with np.load(shared_data / "qm9/qm9_25k.npz") as npz:
        source = {k: npz[k] for k in npz.files}
    offsets = source["offsets"]
    keep = [i for i in range(len(offsets) - 1) if 9 not in source["Z"][offsets[i] : offsets[i + 1]]][:MOLECULES]
    atoms = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in keep])
    out = {k: v[keep] for k, v in source.items() if k != "offsets" and len(v) == len(offsets) - 1}
    out.update(offsets=np.concatenate([[0], np.cumsum(np.diff(offsets)[keep])]), Z=source["Z"][atoms], R=source["R"][atoms])
    path = tmp_path / "qm9_small.npz"
    np.savez(path, **out)
    return path, {k: v for k, v in out.items()}


@pytest.fixture
def qm9_cache(tmp_path):
    return str(tmp_path / "cache")


@pytest.mark.parametrize(
    "target, key, factor", [("U0", keys.ENERGY, HARTREE), ("mu", DIPOLE_NORM, 1.0), ("gap", INTENSIVE, HARTREE)]
)
def test_each_target_kind_has_its_key(small_npz, qm9_cache, target, key, factor):
    path, raw = small_npz
    dataset = qm9_dataset(path, 3.0, torch.float64, target, qm9_cache)
    for i in (0, MOLECULES - 1):
        graph = dataset[i]
        assert graph[key].item() == pytest.approx(raw[target][i] * factor, rel=1e-12)  # mu stays in Debye
        assert (keys.ENERGY in graph) == (target == "U0")  # molecular targets carry no energy to train by mistake
    config = DataConfig(path=str(path), train_size=10, val_size=5, format="qm9", target=target)
    assert target_key(config) == key


def test_unknown_qm9_target_is_named(small_npz, qm9_cache):
    with pytest.raises(ValueError, match="unknown QM9 target 'dipole'"):
        qm9_dataset(small_npz[0], 3.0, torch.float64, "dipole", qm9_cache)


def test_qm9_energies_take_the_atom_references():
    qm9 = dict(path="x.npz", train_size=10, val_size=5, format="qm9")
    assert reference_energies(DataConfig(**qm9, target="U0"), 3.0) == atomref("U0")
    assert reference_energies(DataConfig(**qm9, target="H"), 3.0) == atomref("H")
    assert reference_energies(DataConfig(**qm9), 3.0) == atomref("U0")  # the default target
    assert reference_energies(DataConfig(**qm9, target="gap"), 3.0) is None
    given = {"H": -1.0, "C": -2.0, "N": -3.0, "O": -4.0}
    assert reference_energies(DataConfig(**qm9, target="U0", isolated_atoms=given), 3.0) == given


def _run(tiny_config, small_npz, qm9_cache, target, model=None, loss=None):
    """One epoch of the tiny model on 24 / 8 / 4 of the small QM9 file (plots on: they must cope without energies)."""
    raw = tiny_config(
        data={"format": "qm9", "path": str(small_npz[0]), "target": target, "train_size": 24, "val_size": 8, "cache_dir": qm9_cache},
        model=model or {}, loss={"forces_weight": 0.0, **(loss or {})}, max_epochs=1, batch_size=8, plots=True, tensorboard=False,
    )  # fmt: skip
    result = train(load_config(raw))
    return result, json.loads((result.output_dir / "metrics.json").read_text())


def test_u0_trains_on_atomization_energies(tiny_config, small_npz, qm9_cache):
    result, metrics = _run(tiny_config, small_npz, qm9_cache, "U0")
    model = load_model(result.output_dir / "model.pt")
    expected = {z: e for z, e in atomref("U0").items() if z != 9}  # no fluorine in the small file
    assert model.config["atomic_energies"] == pytest.approx(expected, rel=1e-15)
    assert "energy_mae" in metrics["test"]


def test_mu_trains_the_dipole_norm_and_evaluates_from_the_command_line(tiny_config, small_npz, qm9_cache, capsys):
    from molequi.cli import main

    result, metrics = _run(tiny_config, small_npz, qm9_cache, "mu", {"dipole": True}, {"energy_weight": 0.0, "dipole_weight": 1.0})
    assert set(metrics["test"]) == {"loss", "dipole_norm_mae", "dipole_norm_rmse"}
    assert metrics["test"]["loss"] == pytest.approx(metrics["test"]["dipole_norm_rmse"] ** 2, rel=1e-12)
    capsys.readouterr()
    model, data = str(result.output_dir / "model.pt"), str(small_npz[0])
    assert main(["evaluate", model, data, "--format", "qm9", "--target", "mu", "--cache-dir", qm9_cache]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "dipole norm" in line).split()
    assert row[-1] == "D" and float(row[2]) > 0
    assert main(["evaluate", model, data, "--format", "qm9", "--target", "gap", "--cache-dir", qm9_cache]) == 2
    error = capsys.readouterr().err
    assert "predicts none of the targets" in error and "(intensive)" in error


def test_gap_trains_the_pooled_intensive_output(tiny_config, small_npz, qm9_cache):
    model = {"intensive": True, "intensive_shift": 6.8, "intensive_scale": 1.3}
    result, metrics = _run(tiny_config, small_npz, qm9_cache, "gap", model, {"energy_weight": 0.0, "intensive_weight": 1.0})
    assert set(metrics["test"]) == {"loss", "intensive_mae", "intensive_rmse"}
    assert load_model(result.output_dir / "model.pt").config["intensive_shift"] == 6.8  # given values are kept


def test_gap_shift_and_scale_default_to_the_training_gaps(tiny_config, small_npz, qm9_cache):
    """Without intensive_shift / intensive_scale in the config, the model gets the mean and std of the training gaps (eV)."""
    result, _ = _run(tiny_config, small_npz, qm9_cache, "gap", {"intensive": True}, {"energy_weight": 0.0, "intensive_weight": 1.0})
    train_at = torch.load(result.output_dir / "checkpoint.pt", weights_only=False)["split"]["train"]
    assert len(train_at) == 24
    gap = small_npz[1]["gap"][np.asarray(train_at)] * HARTREE
    config = load_model(result.output_dir / "model.pt").config
    assert config["intensive_shift"] == pytest.approx(gap.mean(), rel=1e-12)
    assert config["intensive_scale"] == pytest.approx(gap.std(), rel=1e-12)
