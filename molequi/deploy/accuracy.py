"""How far a compiled or packaged model may be from the eager model, and the check that says so."""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: Largest allowed ``max |candidate - reference| / max(1, max |reference|)`` per output, by the
#: model's dtype: rounding differences of a reordered computation, not of another model.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4}


def tolerance_for(dtype: torch.dtype) -> float:
    """The default tolerance of a model computing in ``dtype`` (see :data:`TOLERANCES`)."""
    return TOLERANCES.get(dtype, TOLERANCES[torch.float32])


def output_errors(candidate: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per output of ``candidate``: ``max |candidate - reference| / max(1, max |reference|)``, in float64.

    Raises:
        ValueError: an output missing from ``reference`` or of another shape.
    """
    errors = {}
    for name, value in candidate.items():
        if name not in reference or reference[name].shape != value.shape:
            got = list(reference[name].shape) if name in reference else "nothing"
            raise ValueError(f"output {name!r}: shape {list(value.shape)}, the eager model gives {got}")
        ref = reference[name].detach().to(torch.float64)
        diff = (value.detach().to(torch.float64) - ref).abs()
        scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
        errors[name] = float(diff.max()) / scale if diff.numel() else 0.0
    return errors


def check_agreement(errors: Mapping[str, float], tolerance: float, what: str) -> None:
    """Raise unless every error is at most ``tolerance``.

    Raises:
        ValueError: naming ``what``, the outputs beyond the tolerance and their errors.
    """
    bad = {name: error for name, error in errors.items() if not error <= tolerance}
    if bad:
        listed = ", ".join(f"{name} {error:.2e}" for name, error in bad.items())
        raise ValueError(
            f"{what} differs from the eager model beyond the tolerance {tolerance:.0e} "
            f"(max |difference| / max(1, max |eager|)): {listed}"
        )
