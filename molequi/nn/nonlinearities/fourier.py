"""Fourier (pointwise-on-the-sphere) nonlinearity ``F^-1 sigma(F f)`` (Franzen & Wand)."""

from __future__ import annotations

import math

import numpy as np
import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, normalized_activation


class FourierActivation(EquivariantNonlinearity):
    """Evaluate each channel's sphere signal on a quadrature grid, apply ``act`` pointwise, project back.

    The features are ``C`` channels of a band-limited function on the sphere,
    ``f_c(x) = sum_{l<=L} sum_m f_{c,lm} Y_lm(x)`` with irreps ``C x 0e + C x 1o + ... + C x L((-1)^L)``.
    The grid is Gauss-Legendre in ``cos(theta)`` times uniform in ``phi`` and integrates every
    spherical polynomial of degree ``<= resolution`` exactly. With ``act`` a polynomial of degree
    ``p``, ``act(f_c)`` has degree ``p L`` and the projection onto ``l <= L`` integrates degree
    ``(p + 1) L``, so ``resolution >= (p + 1) L`` makes the layer exactly equivariant. For other
    activations the layer is equivariant up to the aliasing error, which falls exponentially as
    ``resolution`` grows (``exact = False``). The default grid for them, ``16 L + 8``, keeps the
    O(3) error of SiLU on unit-variance coefficients below ``2e-7`` for ``L = 1..6`` (measured in
    float64, ``tests/nn/test_nonlinearities.py``) at a cost of ``(8 L + 5)(16 L + 9)`` grid points.

    Args:
        irreps_out: ``C x l`` with parity ``(-1)^l`` for ``l = 0..L`` in this order, e.g. ``"8x0e+8x1o+8x2e"``.
        act: pointwise activation (default ``"silu"``); rescaled to unit second moment.
        degree: declare ``act`` a polynomial of this degree (then ``act`` must be given); the default
            grid is then the smallest exact one, ``resolution = (degree + 1) L``.
        resolution: quadrature degree of the grid (default ``(degree + 1) L``, else ``16 L + 8``; 0 for ``L = 0``,
            where the layer is element-wise and exact).

    Shapes:
        ``[..., irreps_out.dim] -> [..., irreps_out.dim]``.
    """

    family = "fourier"

    def __init__(
        self,
        irreps_out: o3.Irreps | str,
        act: ActivationLike | None = None,
        degree: int | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        channels = irreps[0].mul if len(irreps) else 0
        expected = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(len(irreps))])
        if channels == 0 or irreps != expected:
            raise ValueError(
                f"fourier nonlinearity: irreps {irreps} are not channels of sphere signals; it needs the same "
                "multiplicity C for l = 0..L in order with parity (-1)^l, e.g. '8x0e+8x1o+8x2e'"
            )
        if degree is not None and (act is None or degree < 1):
            raise ValueError(
                f"fourier nonlinearity: degree={degree!r} declares a polynomial activation; it needs a positive "
                "degree and the polynomial itself as act="
            )
        lmax = len(irreps) - 1
        exact_resolution = (degree + 1) * lmax if degree is not None else 0 if lmax == 0 else None
        if resolution is None:
            resolution = exact_resolution if exact_resolution is not None else 16 * lmax + 8
        if resolution < 0:
            raise ValueError(f"fourier nonlinearity: resolution={resolution} must be >= 0")
        self.irreps_in = self.irreps_out = irreps
        self.exact = exact_resolution is not None and resolution >= exact_resolution
        self.channels, self.lmax, self.resolution = channels, lmax, resolution
        act = act if act is not None else "silu"
        self.act_name = act if isinstance(act, str) else getattr(act, "__name__", repr(act))
        self.act = normalized_activation(act, self.family)
        to_grid, from_grid = _sphere_quadrature(lmax, resolution)
        self.register_buffer("to_grid", to_grid.to(torch.get_default_dtype()))
        self.register_buffer("from_grid", from_grid.to(torch.get_default_dtype()))

    def inexact_hint(self) -> str:
        return (
            f"act={self.act_name!r} on a resolution-{self.resolution} grid; a larger resolution= lowers the "
            "error, a polynomial act declared with degree= makes the layer exact"
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., C * (L+1)^2] -> [..., C * (L+1)^2]``."""
        c = self.channels
        blocks = [features[..., sl].unflatten(-1, (c, 2 * l + 1)) for l, sl in enumerate(self.irreps_in.slices())]
        coefficients = torch.cat(blocks, dim=-1)  # [..., C, (L+1)^2]
        signal = self.act(coefficients @ self.to_grid.T)  # [..., C, P]
        projected = signal @ self.from_grid  # [..., C, (L+1)^2]
        return torch.cat([projected[..., l * l : (l + 1) ** 2].flatten(-2) for l in range(self.lmax + 1)], dim=-1)


def _sphere_quadrature(lmax: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthesis and analysis matrices ``[P, (L+1)^2]`` of a grid exact up to degree ``resolution``.

    Signals are scaled so that unit-variance coefficients give a unit-variance signal
    (``sum_m Y_lm(x)^2 = (2l+1)/4pi``); ``from_grid`` is the exact inverse on band-limited signals.
    """
    num_theta, num_phi = resolution // 2 + 1, resolution + 1
    z, w_theta = np.polynomial.legendre.leggauss(num_theta)
    phi = 2 * math.pi * np.arange(num_phi) / num_phi
    z, w_theta, phi = (torch.from_numpy(a).to(torch.float64) for a in (z, w_theta, phi))
    rho = torch.sqrt(1 - z**2)[:, None]
    points = torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z[:, None].expand(-1, num_phi)], dim=-1)
    weights = (w_theta[:, None] * (2 * math.pi / num_phi)).expand(-1, num_phi).reshape(-1)
    harmonics = o3.spherical_harmonics(list(range(lmax + 1)), points.reshape(-1, 3), False, normalization="integral")
    scale = math.sqrt(4 * math.pi / (lmax + 1) ** 2)
    return harmonics * scale, weights[:, None] * harmonics / scale
