"""Smoke test: ``benchmarks/model_speed.py`` runs end to end for molequi with minimal sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a subprocess per case: about a minute
def test_model_speed_quick_runs_for_molequi(tmp_path):
    out = tmp_path / "speed.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "model_speed.py"), "--quick", "--sides", "molequi",
        "--systems", "aspirin32,water648", "--dtypes", "float32", "--tasks", "forces,train",
        "--threads", "1", "--json", str(out), "--workdir", str(tmp_path / "inputs"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| aspirin32 | forces | float32 | molequi |" in proc.stdout
    assert "| aspirin32 | train | float32 | molequi |" in proc.stdout
    results = json.loads(out.read_text())["results"]
    assert {(r["system"], r["task"]) for r in results} == {("aspirin32", "forces"), ("aspirin32", "train"), ("water648", "forces")}
    for r in results:
        assert r["median_ms"] > 0 and r["peak_rss_mb"] > 0 and r["threads"] == 1 and r["edges"] > 0
    assert (tmp_path / "inputs" / "water648.extxyz").is_file()


def test_water_boxes_are_deterministic_and_at_water_density():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import model_speed
    finally:
        sys.path.pop(0)
    a, b = model_speed.water_box(3, seed=0), model_speed.water_box(3, seed=0)
    assert len(a) == 81 and (a.positions == b.positions).all()
    density = 27 * 18.01528 / 0.602214076 / a.get_volume()  # g/cm^3
    assert abs(density - 1.0) < 1e-6
