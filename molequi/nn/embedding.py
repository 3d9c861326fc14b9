"""Chemical species: atomic numbers to contiguous indices and one-hot node attributes."""

from __future__ import annotations

from typing import Sequence

import torch
from ase.data import atomic_numbers, chemical_symbols


def normalize_species(species: Sequence[int | str]) -> list[int]:
    """Atomic numbers of ``species`` (numbers or symbols), sorted and unique.

    Raises:
        ValueError: an entry is no element.
    """
    numbers = []
    for item in species:
        if isinstance(item, str):
            if item not in atomic_numbers:
                raise ValueError(f"unknown element symbol {item!r}")
            numbers.append(atomic_numbers[item])
        elif 1 <= int(item) < len(chemical_symbols):
            numbers.append(int(item))
        else:
            raise ValueError(f"unknown atomic number {item!r}")
    if not numbers:
        raise ValueError("species is empty: a model needs at least one element")
    return sorted(set(numbers))


class SpeciesIndex(torch.nn.Module):
    """Map atomic numbers ``z [N]`` to species indices ``[N]`` in ``0..num_species-1``.

    Raises:
        ValueError: on an element outside ``species`` (names it), rather than a silent wrong index.
    """

    def __init__(self, species: Sequence[int | str]) -> None:
        super().__init__()
        self.species = normalize_species(species)
        table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        table[self.species] = torch.arange(len(self.species))
        self.register_buffer("table", table, persistent=False)

    @property
    def num_species(self) -> int:
        return len(self.species)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [N] -> [N]``."""
        if z.numel() and (z.min() < 1 or z.max() >= self.table.numel()):
            raise ValueError(f"atomic numbers out of range 1..{self.table.numel() - 1}: {z.unique().tolist()}")
        index = self.table[z]
        if z.numel() and bool((index < 0).any()):
            unknown = sorted({chemical_symbols[int(n)] for n in z[index < 0].unique()})
            known = [chemical_symbols[n] for n in self.species]
            raise ValueError(f"element(s) {unknown} not among the model's species {known}")
        return index
