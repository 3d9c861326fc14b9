"""``benchmarks/qm9_budget.py`` and its SchNet peer: the peer is PyG's SchNet, the split, files, jobs and table (fast); --quick (slow)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn.models import SchNet

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "qm9" / "qm9_25k.npz"

sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
try:
    import qm9_budget as bench
    import schnet_qm9 as peer
finally:
    del sys.path[:2]


def _molecules() -> list[Data]:
    generator = torch.Generator().manual_seed(0)
    graphs = []
    for z in ([6, 8, 1, 1, 1, 1], [7, 1, 1, 1], [6, 6, 1, 1]):
        pos = torch.randn(len(z), 3, generator=generator, dtype=torch.float64) * 1.2
        graphs.append(Data(z=torch.tensor(z), pos=pos))
    return graphs


def test_schnet_potential_is_pyg_schnet(float64):
    """Energies and forces equal SchNet.forward's (readout add, mean/std/atomref) on molequi's neighbour list."""
    e0 = {1: -13.6, 6: -1029.9, 7: -1485.3, 8: -2042.6}
    torch.manual_seed(0)
    model = peer.SchNetPotential([1, 6, 7, 8], r_max=4.0, hidden_channels=16, num_filters=16, num_interactions=2,
                                 num_gaussians=10, atomic_energies=e0, scale=0.2, shift=-4.2)  # fmt: skip
    atomref = torch.zeros(100, 1, dtype=torch.float64)
    for z, e in e0.items():
        atomref[z] = e
    reference = SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10, cutoff=4.0,
                       interaction_graph=peer.MolequiNeighbours(4.0), mean=-4.2, std=0.2, atomref=atomref)  # fmt: skip
    missing, unexpected = reference.load_state_dict(model.schnet.state_dict(), strict=False)
    assert sorted(missing) == ["atomref.weight", "initial_atomref"] and unexpected == []  # the reference's atomref only
    batch = Batch.from_data_list(_molecules())
    pos = batch.pos.clone().requires_grad_(True)
    energy = reference(batch.z, pos, batch.batch).reshape(-1)
    forces = -torch.autograd.grad(energy.sum(), pos)[0]
    out = model({"z": batch.z, "pos": batch.pos, "batch": batch.batch}, compute_forces=True)
    assert torch.allclose(out["energy"], energy, rtol=0, atol=1e-9)
    assert torch.allclose(out["forces"], forces, rtol=0, atol=1e-10)


def test_schnet_config_replaces_the_model_and_the_learning_rate(tmp_path):
    raw = peer.schnet_config(ROOT / "examples/configs/qm9_u0.yaml")
    assert raw["model"] == {"name": "SchNetPotential", "r_max": 5.0, **peer.SCHNET_DEFAULTS}
    assert raw["optim"]["lr"] == peer.SCHNET_OPTIM["lr"] and raw["optim"]["ema_decay"] == 0.999
    from molequi.training import load_config

    config = load_config(raw, ["model.num_interactions=3"])
    assert config.model.options["num_interactions"] == 3 and config.data.target == "U0"


def test_split_is_qm9_u0_yaml_draw():
    from molequi.data.datasets import random_split_indices

    parts = bench.split(25000, bench.SIZES["full"], 0)
    train, val, test = random_split_indices(25000, [20000, 2000], 0)
    assert sorted(parts["train"].tolist()) == train.tolist()
    assert parts["val"].tolist() == val.tolist() and parts["test"].tolist() == test.tolist()
    assert parts["train"].tolist() != train.tolist()  # a seeded order: its prefixes are random subsets
    quick = bench.split(25000, bench.SIZES["quick"], 0)
    assert set(quick["test"].tolist()) < set(test.tolist()) and len(quick["val"]) == bench.SIZES["quick"][1]


def test_nested_prefix_swaps_in_missing_elements():
    numbers = [np.array([6, 1]), np.array([6, 1, 1]), np.array([8, 1]), np.array([9, 6]), np.array([6, 7])]
    order = np.array([0, 1, 2, 3, 4])
    # F replaces molecule 1 (the O of molecule 2 would go), then N replaces molecule 0 (CH: kept by the others)
    assert bench.nested_prefix(order, numbers, 3).tolist() == [4, 3, 2]
    assert bench.nested_prefix(order, numbers, 5).tolist() == order.tolist()
    assert bench.nested_prefix(order[:3], numbers, 2).tolist() == [0, 2]


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory):
    if not DATA.exists():
        pytest.skip("../shared/data/qm9/qm9_25k.npz is not available")
    args = argparse.Namespace(data=DATA, quick=True, seed=0, workdir=tmp_path_factory.mktemp("qm9_budget"))
    return bench.prepare_data(args)


def test_split_files_give_molequi_the_benchmark_split(quick_data):
    """molequi's seeded draw on trainval_<k>.npz returns the benchmark's training and validation molecules."""
    from molequi.data.datasets import random_split_indices

    n_train, n_val, n_test = quick_data["sizes"]
    with np.load(DATA) as npz:
        gdb = npz["gdb_idx"]
    parts = bench.split(len(gdb), bench.SIZES["quick"], 0)
    for k, path in quick_data["files"].items():
        with np.load(path) as npz:
            ids = npz["gdb_idx"]
            assert npz["offsets"][-1] == len(npz["Z"]) == len(npz["R"])
        train_at, val_at, rest = random_split_indices(k + n_val, [k, n_val], 0)
        assert len(rest) == 0 and set(ids[val_at.numpy()]) == set(gdb[parts["val"]])
        assert set(ids[train_at.numpy()]) <= set(gdb[parts["train"]])
    with np.load(quick_data["test"]) as npz:
        assert npz["gdb_idx"].tolist() == quick_data["test_gdb_idx"] == gdb[parts["test"]].tolist()
        assert len(npz["gdb_idx"]) == n_test


def _args(tmp_path, **changes) -> argparse.Namespace:
    args = bench.parse_args(["--workdir", str(tmp_path), "--data", str(ROOT / "pyproject.toml"), *changes.pop("argv", [])])
    return argparse.Namespace(**{**vars(args), **changes})


def test_commands_share_data_budget_clock_and_threads(tmp_path):
    data = {"files": {200: "/d/trainval_200.npz"}, "test": "/d/test.npz", "sizes": [200, 50, 100]}
    args = _args(tmp_path)
    molequi = bench.command(bench.Job("equivariant", "EquivariantPotential", 10, 200), data, args, tmp_path / "a")
    schnet = bench.command(bench.Job("schnet", "SchNet", 10, 200), data, args, tmp_path / "b")
    assert molequi[1:4] == ["-m", "molequi.cli", "train"] and schnet[1] == str(bench.SCHNET)
    for cmd in (molequi, schnet):
        settings = cmd[cmd.index("--overwrite") + 1 :][1::2]
        assert {"data.test_path=/d/test.npz", "data.train_size=200", "max_minutes=10", "budget_clock=cpu"} <= set(settings)
        assert cmd[cmd.index("--threads") + 1] == "1"


def test_best_model_drives_curve_mu_and_gap():
    results = [
        {"row": "equivariant", "model": "EquivariantPotential", "budget": 10.0, "val_mae": 80.0},
        {"row": "nbody", "model": "NBodyNetwork", "budget": 10.0, "val_mae": 60.0},
        {"row": "nbody", "model": "NBodyNetwork", "budget": 30.0, "val_mae": 10.0},
    ]
    assert bench.best_model(results, 10.0, "equivariant") == "NBodyNetwork"
    assert bench.best_model(results[:1], 30.0, "nbody") == "NBodyNetwork"  # nothing at 30 min: the fallback
    data = {"sizes": [200, 50, 100], "curve": [100]}
    jobs = bench.later_jobs(["curve", "mu", "gap"], "NBodyNetwork", 10.0, data)
    assert [(j.row, j.model, j.train) for j in jobs] == [
        ("curve", "NBodyNetwork", 100), ("curve", "SchNet", 100), ("mu", "NBodyNetwork", 200), ("gap", "EquivariantPotential", 200),
    ]  # fmt: skip
    assert "model.dipole=true" in jobs[2].overrides and jobs[2].config is None
    assert jobs[3].config == "qm9_gap.yaml" and jobs[3].overrides == []  # shift and scale from the training gaps


def test_table_lists_runs_failures_and_anchors():
    data = {"sizes": [200, 50, 100]}
    done = {"row": "schnet", "model": "SchNet", "target": "U0", "train": 200, "budget": 1.0, "epochs": 3, "epoch_s": [5.0, 6.0],
            "unit": "meV", "test_mae": 531.2, "val_mae": 552.0, "cpu_s": 50.0, "process_s": 100.0, "loadavg": [1.0, 2.0]}  # fmt: skip
    failed = {"row": "mu", "model": "EquivariantPotential", "target": "mu", "train": 200, "budget": 1.0, "error": "exit 2: boom"}
    table = bench.format_table([failed, done], data)
    lines = table.splitlines()
    assert lines.index(next(line for line in lines if "| schnet |" in line)) < lines.index(next(line for line in lines if "| mu |" in line))
    assert "| 3 | 6 | 531 meV | 552 meV | 50 |" in table and "failed: exit 2: boom" in table
    assert "PaiNN 5.9, DimeNet++ 6.3, SchNet 14, Cormorant 22" in table


@pytest.mark.parametrize("argv, message", [(["--rows", "painn"], "--rows"), (["--budgets", "0"], "--budgets")])
def test_bad_options_are_named(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        _args(tmp_path, argv=argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_trains_both_rows(tmp_path):
    """``--quick``: EquivariantPotential and SchNet for one minute each, side by side (a few minutes)."""
    if not DATA.exists():
        pytest.skip("../shared/data/qm9/qm9_25k.npz is not available")
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/qm9_budget.py"), "--quick", "--workdir", str(tmp_path), "--json", str(out)],
                   check=True, cwd=ROOT)  # fmt: skip
    results = json.loads(out.read_text())["results"]
    assert {r["model"] for r in results} == {"EquivariantPotential", "SchNet"}
    assert all(r["test_frames"] == bench.SIZES["quick"][2] and r["epochs"] >= 1 for r in results)


def test_override_reaches_the_row_its_graphs_and_its_table_line(tmp_path):
    args = _args(tmp_path, argv=["--override", "schnet:model.r_max=4.0", "--override", "nbody:model.lmax=2"])
    assert args.override == {"schnet": ["model.r_max=4.0"], "nbody": ["model.lmax=2"]}
    jobs = bench.main_jobs(["equivariant", "schnet", "nbody"], [10.0], 200, args.override)
    by_row = {job.row: job for job in jobs}
    assert by_row["schnet"].overrides == ["model.r_max=4.0"] and by_row["equivariant"].overrides == []
    data = {"files": {200: "/d/trainval_200.npz"}, "test": "/d/test.npz", "sizes": [200, 50, 100]}
    settings = bench.command(by_row["schnet"], data, args, tmp_path / "s")[1::2]
    assert "model.r_max=4.0" in settings
    # the graphs are built at the overridden cutoff; SchNet's own model keys stay out of the borrowed config
    assert bench.graph_settings(by_row["schnet"]) == ["model.r_max=4.0"]
    small = bench.Job("schnet_small", "SchNet small", 10.0, 200, overrides=["model.r_max=3.5"])
    assert bench.graph_settings(small) == ["model.r_max=3.5"]
    assert bench.graph_settings(by_row["nbody"]) == ["model.lmax=2"]
    result = {**by_row["schnet"].__dict__, "epochs": 1, "epoch_s": [1.0], "unit": "meV", "cpu_s": 1.0, "process_s": 1.0,
              "test_mae": 1.0, "val_mae": 1.0, "loadavg": [1.0, 1.0]}  # fmt: skip
    assert "SchNet (model.r_max=4.0)" in bench.format_table([result], data)
    with pytest.raises(SystemExit):
        _args(tmp_path, argv=["--override", "curve:model.r_max=4.0"])
