"""Deployment of molequi potentials: ``torch.compile`` for inference and exported AOTInductor packages.

- :func:`compile_potential` (:mod:`.compiled`): energy, forces and stress through one compiled
  graph with dynamic atom and edge counts;
- :class:`CompiledTrainingStep` (:mod:`.training_graph`): energy and forces through one compiled
  graph that stays differentiable in the live model's weights (a training step);
- :func:`deploy` (:mod:`.export`, the ``molequi deploy`` command): a model file as a ``.pt2``
  package, checked against the eager model;
- :func:`load_package` (:mod:`.runtime`): runs a package with torch alone (no model classes, no
  e3nn); the package format is described there.

Only :mod:`.runtime` is imported with this package; the others load on first use (they import
the models and e3nn).
"""

from __future__ import annotations

import importlib
from typing import Any

from .runtime import PackagedPotential, is_package, load_package

_LAZY = {
    "CompiledPotential": ".compiled",
    "CompiledTrainingStep": ".training_graph",
    "compile_potential": ".compiled",
    "DeployReport": ".export",
    "deploy": ".export",
    "ForceField": ".graph",
}

__all__ = [
    "CompiledPotential",
    "CompiledTrainingStep",
    "DeployReport",
    "ForceField",
    "PackagedPotential",
    "compile_potential",
    "deploy",
    "is_package",
    "load_package",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
