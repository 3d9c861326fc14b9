"""Reproducible random splits."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def random_split_indices(num: int, sizes: Sequence[int | float], seed: int = 0) -> list[torch.Tensor]:
    """Random disjoint index sets; the last set takes what remains.

    Args:
        num: number of items.
        sizes: sizes of all sets but the last, as counts (int) or fractions of ``num`` (float).
        seed: seed of the permutation (``torch.Generator``), so a seed always gives the same split.

    Returns:
        ``len(sizes) + 1`` long tensors, each sorted ascending.

    Raises:
        ValueError: if the requested sizes exceed ``num`` or are negative.
    """
    counts = [int(round(s * num)) if isinstance(s, float) else int(s) for s in sizes]
    if any(c < 0 for c in counts) or sum(counts) > num:
        raise ValueError(f"split sizes {list(sizes)} (= {counts}) do not fit into {num} items")
    perm = torch.randperm(num, generator=torch.Generator().manual_seed(seed))
    bounds = torch.tensor([0, *counts]).cumsum(0).tolist() + [num]
    return [perm[lo:hi].sort().values for lo, hi in zip(bounds[:-1], bounds[1:])]
