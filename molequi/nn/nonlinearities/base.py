"""The interface every equivariant nonlinearity family implements."""

from __future__ import annotations

from typing import Callable, Union

import torch
from e3nn import o3
from e3nn.math import normalize2mom

from ..init import reset_children

ActivationLike = Union[str, Callable[[torch.Tensor], torch.Tensor]]

_NAMED_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "softplus": torch.nn.functional.softplus,
    "gelu": torch.nn.functional.gelu,
    "abs": torch.abs,
    "identity": lambda x: x,
}


def resolve_activation(act: ActivationLike, family: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the callable named by ``act`` (or ``act`` itself if it is callable).

    Raises:
        ValueError: ``act`` is a string that names no known activation.
    """
    if callable(act):
        return act
    if isinstance(act, str) and act in _NAMED_ACTIVATIONS:
        return _NAMED_ACTIVATIONS[act]
    raise ValueError(
        f"{family}: unknown activation {act!r}; use a callable or one of {sorted(_NAMED_ACTIVATIONS)}"
    )


def normalized_activation(act: ActivationLike, family: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``act`` rescaled so that ``E[act(x)^2] = 1`` for ``x ~ N(0, 1)`` (e3nn's ``normalize2mom``)."""
    return normalize2mom(resolve_activation(act, family))


def function_parity(fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """+1 if ``fn`` is even, -1 if odd, 0 if neither (probed on a fixed grid in float64)."""
    x = torch.linspace(0.0, 10.0, 256, dtype=torch.float64)
    plus, minus = fn(x), fn(-x)
    if torch.allclose(plus, minus, atol=1e-9, rtol=1e-9):
        return 1
    if torch.allclose(plus, -minus, atol=1e-9, rtol=1e-9):
        return -1
    return 0


class EquivariantNonlinearity(torch.nn.Module):
    """Base class of the nonlinearity families.

    A nonlinearity maps features ``[..., irreps_in.dim] -> [..., irreps_out.dim]`` and commutes
    with O(3): ``sigma(D_in(g) f) = D_out(g) sigma(f)`` for every rotation or reflection ``g``.

    Attributes:
        irreps_in: what the layer before must produce.
        irreps_out: what this layer produces.
        exact: ``True`` if the commutation holds to floating-point precision, ``False`` if it only
            holds approximately (e.g. a Fourier activation with a non-polynomial function).
    """

    family: str = ""
    irreps_in: o3.Irreps
    irreps_out: o3.Irreps
    exact: bool

    def reset_parameters(self) -> None:
        """Re-initialise the learnable parameters as at construction (PyG contract; none for some families)."""
        reset_children(self)

    def inexact_hint(self) -> str:
        """For an inexact layer: what limits its accuracy and which options improve it ("" when exact)."""
        return ""

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, exact={self.exact}"
