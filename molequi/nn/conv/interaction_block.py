"""Interaction block: convolution -> equivariant nonlinearity -> self-connection."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from e3nn import o3

from ...testing import equivariance_error
from ..init import reset_children
from ..nonlinearities import EquivariantNonlinearity, build
from .equivariant_conv import EquivariantConv


class InteractionBlock(torch.nn.Module):
    """``x' = sigma(conv(x)) + self_connection(x)`` with any nonlinearity family.

    The nonlinearity is built first from the wanted ``irreps_out`` and the convolution is asked to
    output ``nonlinearity.irreps_in`` (the gate needs extra gate scalars, for example). The
    self-connection is a linear map of ``x`` or, with ``irreps_node_attr`` (e.g. a one-hot species
    ``"4x0e"``), a tensor product of ``x`` with the node attributes (species-dependent, as in NequIP).
    A nonlinearity that is not exactly O(3)-equivariant (``exact = False``, e.g. a Fourier activation
    with a non-polynomial function) is accepted with a warning giving its measured error.

    Args:
        irreps_in: input node irreps.
        irreps_out: output node irreps (the nonlinearity's ``irreps_out``).
        nonlinearity: family name: ``scalar, norm, gate, tensor_product, fourier`` (default ``"gate"``).
        nonlinearity_options: options of the family.
        irreps_node_attr: irreps of ``node_attr`` for a species-dependent self-connection, or ``None``.
        **conv_options: passed to :class:`EquivariantConv` (``irreps_sh``, ``num_radial``, ``r_max``, ...).

    Shapes:
        ``x [N, irreps_in.dim] -> [N, irreps_out.dim]``; ``node_attr [N, irreps_node_attr.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        nonlinearity: str = "gate",
        nonlinearity_options: dict[str, Any] | None = None,
        irreps_node_attr: o3.Irreps | str | None = None,
        **conv_options: Any,
    ) -> None:
        super().__init__()
        self.nonlinearity = build(nonlinearity, irreps_out, **(nonlinearity_options or {}))
        if not self.nonlinearity.exact:
            _warn_inexact(self.nonlinearity)
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), self.nonlinearity.irreps_out
        self.conv = EquivariantConv(self.irreps_in, self.nonlinearity.irreps_in, **conv_options)
        if irreps_node_attr is None:
            self.self_connection: torch.nn.Module = o3.Linear(self.irreps_in, self.irreps_out)
        else:
            self.self_connection = o3.FullyConnectedTensorProduct(self.irreps_in, irreps_node_attr, self.irreps_out)
        self.uses_node_attr = irreps_node_attr is not None

    def reset_parameters(self) -> None:
        """Re-initialise the convolution, nonlinearity and self-connection weights as at construction."""
        reset_children(self)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        edge_index: torch.Tensor,
        node_attr: torch.Tensor | None = None,
        **edge_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """``x [N, irreps_in.dim] -> [N, irreps_out.dim]``; ``edge_inputs`` as in :class:`EquivariantConv`."""
        out = self.nonlinearity(self.conv(x, pos, edge_index, **edge_inputs))
        if self.uses_node_attr:
            if node_attr is None:
                raise ValueError("InteractionBlock: built with irreps_node_attr, so forward needs node_attr")
            return out + self.self_connection(x, node_attr)
        return out + self.self_connection(x)


def _warn_inexact(nonlinearity: EquivariantNonlinearity) -> None:
    """Warn that ``nonlinearity`` breaks O(3) symmetry slightly, with its error measured in float64."""
    probe = copy.deepcopy(nonlinearity).to(torch.float64)
    error = equivariance_error(
        probe, probe.irreps_in, probe.irreps_out, generator=torch.Generator().manual_seed(0)
    )
    warnings.warn(
        f"InteractionBlock: the {nonlinearity.family} nonlinearity is not exactly O(3)-equivariant: "
        f"error {error:.1e} on unit-variance features (float64), {nonlinearity.inexact_hint()}",
        stacklevel=3,
    )
