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

    ``forward`` and :meth:`one_hot` are lookups in tables indexed by ``z`` (no host
    synchronisation, no data-dependent shapes), so they do not check their input: an atomic number
    outside ``species`` gets the index ``num_species``, which any per-species table lookup rejects,
    and a one-hot row of NaN, which makes everything computed from it NaN. Data entry points call
    :meth:`check` first, which names the unknown elements.
    """

    def __init__(self, species: Sequence[int | str]) -> None:
        super().__init__()
        self.species = normalize_species(species)
        num_species = len(self.species)
        # one entry per atomic number 0..118 and one more for any number above: z is clamped into it
        index = torch.full((len(chemical_symbols) + 1,), num_species, dtype=torch.long)
        index[self.species] = torch.arange(num_species)
        one_hot = torch.eye(num_species + 1, num_species)
        one_hot[num_species] = float("nan")
        self.register_buffer("table", index, persistent=False)
        self.register_buffer("one_hot_table", one_hot, persistent=False)

    @property
    def num_species(self) -> int:
        return len(self.species)

    def check(self, z: torch.Tensor | Sequence[int]) -> None:
        """Raise unless every atomic number in ``z`` is one of the model's species.

        Raises:
            ValueError: naming the unknown elements (or the numbers that are no element) and the
                model's species; or ``z`` is not integer.
        """
        z = torch.as_tensor(z)
        if z.is_floating_point() or z.is_complex() or z.dtype == torch.bool:
            raise ValueError(f"atomic numbers must be integers, got a {z.dtype} tensor")
        numbers = sorted(set(z.reshape(-1).tolist()))
        unknown = [n for n in numbers if n not in self.species]
        if not unknown:
            return
        known = [chemical_symbols[n] for n in self.species]
        names = [chemical_symbols[n] if 1 <= n < len(chemical_symbols) else f"atomic number {n}" for n in unknown]
        raise ValueError(f"element(s) {names} not among the model's species {known}")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z [N] -> [N]`` (``num_species`` for an unknown element; see :meth:`check`)."""
        return self.table[z.clamp(0, self.table.numel() - 1)]

    def one_hot(self, z: torch.Tensor) -> torch.Tensor:
        """``z [N] -> [N, num_species]`` one-hot species, a row of NaN for an unknown element."""
        return self.one_hot_table[self.forward(z)]
