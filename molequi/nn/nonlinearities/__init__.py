"""Equivariant nonlinearities behind one interface.

Every family maps ``[..., irreps_in.dim] -> [..., irreps_out.dim]`` and commutes with O(3):
exactly where ``exact`` is True, else up to an aliasing error (the Fourier family with a
non-polynomial activation: below 1e-6 on its default grid). Build one by name::

    act = molequi.nn.nonlinearities.build("gate", "16x0e+8x1o")
    act.irreps_in   # what the layer before must produce: 16x0e+8x1o+8x0e
"""

from __future__ import annotations

from typing import Any

from e3nn import o3

from .base import EquivariantNonlinearity
from .fourier import FourierActivation
from .gate import GateActivation
from .norm import NormActivation
from .scalar import ScalarActivation
from .tensor_product import TensorProductActivation

FAMILIES: dict[str, type[EquivariantNonlinearity]] = {
    "scalar": ScalarActivation,
    "norm": NormActivation,
    "gate": GateActivation,
    "tensor_product": TensorProductActivation,
    "fourier": FourierActivation,
}


def build(name: str, irreps_out: o3.Irreps | str, **options: Any) -> EquivariantNonlinearity:
    """Build the nonlinearity family ``name`` producing ``irreps_out``.

    Args:
        name: one of ``scalar, norm, gate, tensor_product, fourier``.
        irreps_out: the irreps the nonlinearity outputs.
        **options: the family's options (see each class); all have defaults.

    Raises:
        ValueError: unknown family, unknown option, or irreps the family does not support.
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown nonlinearity family {name!r}; choose one of {sorted(FAMILIES)}")
    try:
        return FAMILIES[name](irreps_out, **options)
    except TypeError as error:
        raise ValueError(f"{name} nonlinearity: bad options {sorted(options)}: {error}") from error


__all__ = [
    "FAMILIES",
    "EquivariantNonlinearity",
    "FourierActivation",
    "GateActivation",
    "NormActivation",
    "ScalarActivation",
    "TensorProductActivation",
    "build",
]
