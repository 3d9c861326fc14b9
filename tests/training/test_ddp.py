"""DDP: two CPU processes (torchrun, gloo) give the same run as one process with the same global batch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
import yaml

from molequi.training import load_config, train
from molequi.training.history import read_metrics_csv


def _torchrun_train(config) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2 -m molequi.cli train CONFIG`` on the CPU (gloo), output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "-m", "molequi.cli", "train", str(config)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode and "Address family not supported" in done.stderr:
        pytest.skip("no local TCP sockets for the gloo process group")
    return done


def test_two_processes_equal_one(tiny_config, tmp_path):
    # 8 training graphs, global batch 4: two optimisation steps; each process takes 2 graphs per step
    changes = dict(data={"train_size": 8, "val_size": 4, "test_size": 4}, max_epochs=1, batch_size=4,
                   optim={"warmup_epochs": 0.0, "lr": 0.01, "grad_clip": 0.5})  # fmt: skip
    single = load_config(tiny_config(output_dir=str(tmp_path / "single"), **changes))
    train(single)

    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(tiny_config(output_dir=str(tmp_path / "ddp"), **changes)))
    done = _torchrun_train(config)
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone prints: the test table, the epoch line, torch's DDP warnings
    assert done.stdout.count("test errors of") == 1
    assert len(re.findall(r"^epoch +1/1 ", done.stderr, flags=re.MULTILINE)) == 1, done.stderr
    assert "[rank1]" not in done.stderr

    a = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert a["progress"]["epoch"] == b["progress"]["epoch"] == 1
    assert a["schedule"]["step_count"] == b["schedule"]["step_count"] == 2
    for key in ("model", "ema"):
        weights_a = a[key]["state_dict"] if key == "model" else a[key]["module"]
        weights_b = b[key]["state_dict"] if key == "model" else b[key]["module"]
        for name, value in weights_a.items():
            assert torch.allclose(value, weights_b[name], rtol=0, atol=1e-10), (key, name)
    rows_a = read_metrics_csv(tmp_path / "single" / "metrics.csv")
    rows_b = read_metrics_csv(tmp_path / "ddp" / "metrics.csv")
    assert rows_a[0].keys() == rows_b[0].keys()
    for column, value in rows_a[0].items():  # training and validation metrics reduced over both processes
        assert rows_b[0][column] == pytest.approx(value, rel=1e-10, abs=1e-12), column
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "single").iterdir())


def test_a_batch_that_does_not_split_fails_once(tiny_config, tmp_path):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(tiny_config(output_dir=str(tmp_path / "ddp"), batch_size=5)))
    done = _torchrun_train(config)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "molequi train: error" in line]
    assert lines == ["molequi train: error: batch_size 5 is not divisible by the 2 processes"], done.stderr[-3000:]
