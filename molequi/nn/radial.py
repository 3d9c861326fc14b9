"""Radial basis and smooth cutoff envelope for edge lengths."""

from __future__ import annotations

import math

import torch


class BesselBasis(torch.nn.Module):
    """``e_n(r) = sqrt(2 / r_max) sin(n pi r / r_max) / r`` for ``n = 1..num_basis`` (DimeNet, NequIP).

    Evaluated through ``sinc`` so the value and gradient are finite at ``r = 0``.

    Args:
        r_max: cutoff radius (Å).
        num_basis: number of functions.
        trainable: learn the frequencies ``n pi / r_max`` (default fixed, as in MACE: a layer that
            receives precomputed edge embeddings then has no unused trainable parameters).

    Shapes:
        ``r [...] -> [..., num_basis]``.
    """

    def __init__(self, r_max: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        self.r_max = float(r_max)
        frequencies = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.r_max
        self.frequencies = torch.nn.Parameter(frequencies, requires_grad=trainable)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``r [...] -> [..., num_basis]``."""
        # sin(w r) / r = w sinc(w r / pi), with torch.sinc(x) = sin(pi x) / (pi x)
        argument = r[..., None] * self.frequencies / math.pi
        return math.sqrt(2.0 / self.r_max) * self.frequencies * torch.sinc(argument)


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
        x, p = r / self.r_max, self.p
        envelope = 1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        return envelope * (x < 1.0)


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
