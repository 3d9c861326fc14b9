"""torch's default floating-point dtype as a context manager."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make ``dtype`` torch's default floating-point dtype inside the block (restored on exit).

    e3nn and torch create parameters and intermediates in the default dtype, so a model built or a
    Wigner matrix computed inside ``with default_dtype(torch.float64):`` is float64 throughout.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
