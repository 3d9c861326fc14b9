"""The kernel loader: package data, build once (and say so only then), disable, fall back with a warning."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.utils.cpp_extension

from molequi.nn import EquivariantConv
from molequi.nn.conv import kernel

REPOSITORY = Path(__file__).resolve().parents[2]
BUILD_MESSAGE = "building the fused tensor-product kernel"


def test_source_is_a_cpp_file_shipped_as_package_data():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["molequi.nn.conv"]
    package = REPOSITORY / "molequi" / "nn" / "conv"
    assert kernel.SOURCE in {path.resolve() for pattern in patterns for path in package.glob(pattern)}
    assert "PYBIND11_MODULE(TORCH_EXTENSION_NAME" in kernel.SOURCE.read_text()


def test_loading_a_built_kernel_says_nothing(monkeypatch, caplog):
    if kernel.fused_kernel() is None:
        pytest.skip("the fused C++ kernel cannot be built here")
    monkeypatch.setattr(kernel, "_module", None)  # as in a new process: load again, from the build cache
    with caplog.at_level(logging.INFO, logger=kernel.__name__):
        assert kernel.fused_kernel() is not None
    assert BUILD_MESSAGE not in caplog.text


def test_a_build_is_announced_and_compiles_a_copy_of_the_source(monkeypatch, caplog, tmp_path):
    built = []

    def fake_load(name, sources, **options):
        built.append((name, sources, options["build_directory"]))
        return "module"

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    with caplog.at_level(logging.INFO, logger=kernel.__name__):
        assert kernel._load() == "module"
    name, sources, directory = built[0]
    assert BUILD_MESSAGE in caplog.text and name in caplog.text
    assert Path(directory) == tmp_path / name and sources == [str(tmp_path / name / kernel.SOURCE.name)]
    assert Path(sources[0]).read_text() == kernel.SOURCE.read_text()  # stable path: one build per machine
    assert not kernel.is_built(tmp_path / name, name)
    (tmp_path / name / f"{name}.so").write_bytes(b"")
    assert kernel.is_built(tmp_path / name, name)


def test_environment_disables_the_kernel_quietly(monkeypatch):
    monkeypatch.setattr(kernel, "_module", None)
    monkeypatch.setenv(kernel.ENVIRONMENT, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernel.fused_kernel() is None


def test_unavailable_kernel_warns_once_and_the_conv_uses_torch(monkeypatch, float64):
    def no_compiler():
        raise OSError("no C++ compiler")

    monkeypatch.setattr(kernel, "_module", None)
    monkeypatch.setattr(kernel, "_load", no_compiler)
    torch.manual_seed(0)
    conv = EquivariantConv("4x0e+2x1o", "4x0e+2x1o", r_max=3.0)
    x, pos = conv.irreps_in.randn(3, -1), torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1.5, 0]])
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 0, 0, 2]])
    with pytest.warns(RuntimeWarning, match="kernel is unavailable.*no C\\+\\+ compiler"):
        fallback = conv(x, pos, edge_index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv(x, pos, edge_index)  # once per process
    conv.backend = "torch"
    torch.testing.assert_close(fallback, conv(x, pos, edge_index), rtol=0, atol=0)
