"""A short real training run with the demo config on the demo data learns EMT forces.

Measured (seed 0, one thread, torch 2.13 CPU): after 12 epochs (~30 s of CPU time) the test
force MAE is 0.062 eV/A and the energy MAE 0.012 eV/atom, from 0.17 eV/A and 0.13 eV/atom after
the first epoch (the force RMS of the data is 0.71 eV/A). The bounds leave a margin for other
platforms. The full demo (60 epochs, `molequi demo`, ~100 s) reaches 0.016 eV/A and 0.0037 eV/atom.
"""

from __future__ import annotations

from molequi.training import load_config, train
from molequi.training.yaml_io import read_yaml

FORCE_MAE_BOUND = 0.10  # eV/A
ENERGY_PER_ATOM_MAE_BOUND = 0.025  # eV/atom


def test_short_demo_run_learns_forces(repository, demo_data, cache_dir, tmp_path):
    raw = read_yaml(repository / "examples" / "configs" / "demo.yaml")
    raw["data"]["path"] = str(demo_data)
    overrides = [f"output_dir={tmp_path / 'demo'}", f"data.cache_dir={cache_dir}", "max_epochs=12", "progress_bar=false"]
    result = train(load_config(raw, overrides))
    assert result.epochs == 12 and result.stop_reason == "max_epochs"
    assert result.test_metrics["forces_mae"] < FORCE_MAE_BOUND
    assert result.test_metrics["energy_per_atom_mae"] < ENERGY_PER_ATOM_MAE_BOUND
    for name in ("model.pt", "metrics.json", "learning_curves.png", "parity_energy.png", "parity_forces.png"):
        assert (result.output_dir / name).is_file()
