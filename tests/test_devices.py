"""Device names: ``auto``, ``cpu``, ``cuda[:N]``, refused with a message when torch cannot use them."""

from __future__ import annotations

import pytest
import torch

from molequi.devices import resolve_device


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


def test_cuda_on_a_cpu_only_build(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    for name in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(ValueError, match="CUDA is not available in this torch build"):
            resolve_device(name)


def test_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no GPU visible"):
        resolve_device("cuda")


def test_gpu_index_beyond_those_present(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="GPU 2 asked for, but only 2 are visible"):
        resolve_device("cuda:2")


def test_unknown_name():
    with pytest.raises(ValueError, match="'gpu': not a torch device name"):
        resolve_device("gpu")
