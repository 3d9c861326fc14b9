"""Element-wise activations on scalar fields (0e / 0o), parity-aware."""

from __future__ import annotations

import torch
from e3nn import o3

from .base import ActivationLike, EquivariantNonlinearity, function_parity, normalized_activation


class ScalarActivation(EquivariantNonlinearity):
    """Element-wise ``act`` on even scalars and ``act_odd`` on odd scalars.

    Under inversion an odd scalar changes sign, so it only admits an odd function (output stays
    ``0o``) or an even one (output becomes ``0e``), as in ``e3nn.nn.Activation``. Activations are
    rescaled to unit second moment under a unit Gaussian (``normalize2mom``).

    Args:
        irreps_out: scalar irreps only, e.g. ``"16x0e+4x0o"``. For an even ``act_odd`` the odd
            entries of the input become even in the output.
        act: activation of even scalars (default ``"silu"``).
        act_odd: activation of odd scalars (default ``"tanh"``); must be odd or even.

    Shapes:
        ``[..., irreps_in.dim] -> [..., irreps_out.dim]`` with ``irreps_in = irreps_out`` up to the
        parity change above.
    """

    family = "scalar"

    def __init__(
        self, irreps_out: o3.Irreps | str, act: ActivationLike = "silu", act_odd: ActivationLike = "tanh"
    ) -> None:
        super().__init__()
        irreps = o3.Irreps(irreps_out)
        if any(ir.l != 0 for _, ir in irreps):
            raise ValueError(
                f"scalar nonlinearity: irreps {irreps} contain l > 0; it needs scalar irreps only "
                "(0e/0o). Use the gate, norm, tensor_product or fourier family for l > 0."
            )
        self.act_even = normalized_activation(act, self.family)
        self.act_odd = normalized_activation(act_odd, self.family)
        odd_parity = function_parity(self.act_odd)
        if any(ir.p == -1 for _, ir in irreps) and odd_parity == 0:
            raise ValueError(
                f"scalar nonlinearity: irreps {irreps} contain odd scalars (0o), which need an odd or "
                f"even activation, but act_odd={act_odd!r} is neither"
            )
        self.irreps_in = irreps
        self.irreps_out = o3.Irreps(
            [(mul, (0, 1 if ir.p == 1 or odd_parity == 1 else -1)) for mul, ir in irreps]
        )
        self.exact = True
        odd = [torch.full((mul,), ir.p == -1, dtype=torch.bool) for mul, ir in irreps]
        self.register_buffer("odd_mask", torch.cat(odd) if odd else torch.zeros(0, dtype=torch.bool), persistent=False)
        self.has_odd = bool(self.odd_mask.any())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [..., irreps_in.dim] -> [..., irreps_out.dim]``."""
        if not self.has_odd:
            return self.act_even(features)
        return torch.where(self.odd_mask, self.act_odd(features), self.act_even(features))
