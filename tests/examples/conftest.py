"""Load the scripts of ``examples/`` as modules (they are not part of the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from collections.abc import Iterator
from types import ModuleType
from typing import Callable

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as the module ``<name>`` (registered in ``sys.modules``)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each example test on one torch thread.

    The tests use tiny tensors, where a second thread only adds OpenMP synchronisation, which is
    very slow on a loaded shared machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def load_example() -> Callable[[str], ModuleType]:
    """``load_example("tetris")`` -> the module ``examples/tetris.py``."""
    return _load
