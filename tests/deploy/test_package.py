"""``molequi deploy`` end to end: an AOTInductor package run by the calculator, ``molequi md`` and torch alone.

Compiling a package takes minutes on a CPU, so the package is built once (slow tests); the
command's refusals need no compiler and run by default.
"""

from __future__ import annotations

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch
from deploy_systems import R_MAX, SPECIES, inputs, structure

from molequi import cli
from molequi.calculators import MolequiCalculator
from molequi.models import save_model


@pytest.fixture(scope="module")
def package(tiny_model, tmp_path_factory):
    """``molequi deploy model.pt tiny.pt2`` (with stress) and the model file."""
    folder = tmp_path_factory.mktemp("deploy")
    save_model(tiny_model, folder / "model.pt")
    assert cli.main(["deploy", str(folder / "model.pt"), str(folder / "tiny.pt2")]) == 0
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", ["CH3CH2OH", "C6H6", "box"])
def test_calculator_on_the_package_equals_the_model(package, name):
    eager, deployed = structure(name), structure(name)
    eager.calc = MolequiCalculator(package / "model.pt")
    deployed.calc = MolequiCalculator(package / "tiny.pt2")
    energy = eager.get_potential_energy()
    assert abs(deployed.get_potential_energy() - energy) <= 1e-10 * abs(energy)
    assert np.abs(deployed.get_forces() - eager.get_forces()).max() <= 1e-10
    if name == "box":
        assert np.abs(deployed.get_stress() - eager.get_stress()).max() <= 1e-10


@pytest.mark.slow
def test_metadata_describe_the_model(package):
    metadata = torch._inductor.aoti_load_package(str(package / "tiny.pt2")).get_metadata()
    assert float(metadata["r_max"]) == R_MAX and metadata["species"] == " ".join(map(str, SPECIES))
    assert metadata["dtype"] == "float64" and metadata["outputs"] == "energy forces stress"
    assert json.loads(metadata["versions"])["torch"] == torch.__version__
    assert json.loads(metadata["config"])["hidden_irreps"] == "4x0e+2x1o+2x2e"


@pytest.mark.slow
def test_torch_alone_runs_the_package(package):
    """No e3nn, no torch_geometric, no molequi model code in the process that loads and runs it."""
    data = inputs("C6H6")
    torch.save({k: data[k] for k in ("z", "pos", "edge_index", "edge_shift", "cell")}, package / "benzene.pt")
    probe = f"""
import sys
for name in ("e3nn", "torch_geometric", "molequi.models", "molequi.nn"):
    sys.modules[name] = None  # any import of them fails
import torch
from molequi.deploy.runtime import load_package
data = torch.load({str(package / "benzene.pt")!r})
out = load_package({str(package / "tiny.pt2")!r})(data)
torch.save(out, {str(package / "out.pt")!r})
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = torch.load(package / "out.pt")
    from molequi.models import load_model

    reference = load_model(package / "model.pt")(data)
    assert float((out["forces"] - reference["forces"]).abs().max()) <= 1e-10


@pytest.mark.slow
def test_md_runs_the_package(package, capsys):
    ase.io.write(package / "start.xyz", structure("CH3CH2OH"))
    argv = ["md", str(package / "tiny.pt2"), str(package / "start.xyz"), "--steps", "10", "--interval", "5"]
    argv += ["--out", str(package / "md.traj"), "--no-progress", "--timestep", "0.25"]
    assert cli.main(argv) == 0
    assert "10 steps of nve MD (9 atoms)" in capsys.readouterr().out
    assert len(ase.io.read(package / "md.traj", ":")) == 3  # steps 0, 5 and 10


@pytest.mark.slow
def test_a_package_beyond_the_tolerance_is_not_written(package, tiny_model, tmp_path, monkeypatch):
    """The check fails (tolerance -1): ValueError naming the structure, no package, no partial file left."""
    import shutil

    from molequi.deploy import export

    def copy_built(program, package_path, inductor_configs):  # skip minutes of compiling: the same package
        shutil.copy(package / "tiny.pt2", package_path)
        return package_path

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", copy_built)
    with pytest.raises(ValueError, match=r"the package on C2H6O \(9 atoms\) differs from the eager model"):
        export.deploy(tiny_model, tmp_path / "out.pt2", structures=[structure("CH3CH2OH")], tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_deploy_refuses_a_path_without_the_package_suffix(tiny_model, tmp_path, capsys):
    save_model(tiny_model, tmp_path / "model.pt")
    assert cli.main(["deploy", str(tmp_path / "model.pt"), str(tmp_path / "out.pt")]) == 2
    assert "must end in .pt2" in capsys.readouterr().err
    assert cli.main(["deploy", str(tmp_path / "absent.pt"), str(tmp_path / "out.pt2")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
