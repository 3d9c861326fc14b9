"""Radial basis and smooth cutoff envelope for edge lengths, and the radial MLP of the convolutions."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from e3nn.nn import FullyConnectedNet

from .init import reset_children


class BesselBasis(torch.nn.Module):
    """``e_n(r) = sqrt(2 / r_max) sin(n pi r / r_max) / r`` for ``n = 1..num_basis`` (DimeNet, NequIP).

    Evaluated through ``sinc`` so the value and gradient are finite at ``r = 0``.

    Args:
        r_max: cutoff radius (Å).
        num_basis: number of functions.
        trainable: learn the frequencies ``n pi / r_max`` (a parameter); by default they are fixed
            (a buffer, as in MACE).

    Shapes:
        ``r [...] -> [..., num_basis]``.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        self.r_max = float(r_max)
        frequencies = bessel_frequencies(num_basis, self.r_max, torch.get_default_dtype())
        if trainable:
            self.frequencies = torch.nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r [...] -> [..., num_basis]``."""
        return bessel_basis(r, self.frequencies, self.r_max)


def bessel_frequencies(
    num_basis: int, r_max: float, dtype: torch.dtype | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """``[num_basis]`` frequencies ``n pi / r_max`` of :class:`BesselBasis`."""
    return torch.arange(1, num_basis + 1, dtype=dtype, device=device) * math.pi / float(r_max)


def bessel_basis(r: torch.Tensor, frequencies: torch.Tensor, r_max: float) -> torch.Tensor:
    """:class:`BesselBasis` as a function: ``r [...]``, ``frequencies [num_basis]`` -> ``[..., num_basis]``."""
    # sin(w r) / r = w sinc(w r / pi), with torch.sinc(x) = sin(pi x) / (pi x)
    argument = r[..., None] * frequencies / math.pi
    return math.sqrt(2.0 / float(r_max)) * frequencies * torch.sinc(argument)


def polynomial_cutoff(r: torch.Tensor, r_max: float, p: int = 6) -> torch.Tensor:
    """:class:`PolynomialCutoff` as a function: ``r [...] -> [...]``."""
    x = r / float(r_max)
    envelope = 1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return envelope * (x < 1.0)


class PolynomialCutoff(torch.nn.Module):
    """Smooth envelope ``u(r)``: 1 at ``r = 0``, 0 with ``p`` vanishing derivatives at ``r_max`` (DimeNet).

    ``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x = r / r_max < 1``, else 0.

    Shapes:
        ``r [...] -> [...]``.
    """

    def __init__(self, r_max: float, p: int = 6) -> None:
        super().__init__()
        self.r_max, self.p = float(r_max), int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r [...] -> [...]``."""
        return polynomial_cutoff(r, self.r_max, self.p)


class RadialEmbedding(torch.nn.Module):
    """Bessel basis times the polynomial cutoff envelope: ``[...] -> [..., num_basis]``."""

    def __init__(self, r_max: float, num_basis: int = 8, cutoff_p: int = 6, trainable: bool = False) -> None:
        super().__init__()
        self.num_basis = num_basis
        self.basis = BesselBasis(r_max, num_basis, trainable)
        self.cutoff = PolynomialCutoff(r_max, cutoff_p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r [...] -> [..., num_basis]``."""
        return self.basis(r) * self.cutoff(r)[..., None]


class RadialMLP(FullyConnectedNet):
    """A convolution's radial MLP: e3nn's ``FullyConnectedNet`` with SiLU, ``[E, num_radial] -> [E, num_weights]``.

    Its parameters and state-dict keys are e3nn's (``layer0.weight``, ...). Besides the e3nn
    forward, :meth:`folded_matrices` gives the same map as plain matrices for :func:`apply_mlp`
    (the fused convolution paths), reading e3nn's per-layer scale factors: this class is the one
    place that depends on those internals (tested with e3nn 0.5 and 0.6).

    Args:
        num_radial: input width (radial basis functions).
        hidden: hidden widths.
        num_weights: output width (tensor-product weights).
    """

    def __init__(self, num_radial: int, hidden: Sequence[int], num_weights: int) -> None:
        super().__init__([int(num_radial), *(int(h) for h in hidden), int(num_weights)], torch.nn.functional.silu)

    def folded_matrices(self, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The layers' weights with e3nn's scale factors folded in; ``columns`` selects and orders the outputs.

        ``apply_mlp(h, self.folded_matrices(columns))`` equals ``self(h)[:, columns]`` up to rounding:
        e3nn computes ``x @ (W / sqrt(h_in var_in))``, then ``cst * silu(.)`` (second-moment
        normalised) times ``sqrt(var_out)``; ``cst`` and ``sqrt(var_out)`` go into the next matrix.
        """
        layers = list(self)
        matrices, scale = [], 1.0
        for layer in layers[:-1]:
            matrices.append(layer.weight * (scale / math.sqrt(layer.h_in * layer.var_in)))
            scale = (1.0 if layer.act._is_id else layer.act.cst) * layer.var_out**0.5
        last = layers[-1]
        weight = last.weight if columns is None else last.weight.index_select(1, columns)
        matrices.append(weight * (scale / math.sqrt(last.h_in * last.var_in / last.var_out)))
        return tuple(matrices)

    def reset_parameters(self) -> None:
        """Draw new weights as e3nn does at construction (:func:`molequi.nn.init.reset_children`)."""
        reset_children(self)


def apply_mlp(h: torch.Tensor, matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """The MLP of :meth:`RadialMLP.folded_matrices`: SiLU between the ``h @ W`` layers (``[E, in] -> [E, out]``)."""
    for matrix in matrices[:-1]:
        h = torch.nn.functional.silu(h @ matrix)
    return h @ matrices[-1]
