"""Per-species energy head: ``E_i = scale_z e_i + shift_z + E0_z``, in float64 whatever the model dtype.

A total energy of a molecule is tens of thousands of eV (aspirin: -17,617.636 eV), while the
errors that matter are below 1 meV: float32 resolves 2 meV there. So the reference energies, the
per-species scale and shift and the per-atom energies they produce are float64, even in a float32
model; the network's own output ``e_i`` is O(1) and loses nothing in float32. Both
:class:`~molequi.models.EquivariantPotential` and :class:`~molequi.models.NBodyNetwork` use this
head (NequIP does the same with its per-species scale/shift in float64).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

#: Buffers of :class:`PerSpeciesEnergy`, kept in float64 under ``.to(dtype)`` / ``.float()``.
FLOAT64_BUFFERS = ("scale", "shift", "atomic_energies")


class PerSpeciesEnergy(torch.nn.Module):
    """Scales, shifts and references per-atom network outputs, in float64.

    Args:
        species: atomic numbers of the model's species, in species-index order.
        scale, shift: one number for every species, or ``{Z: value}`` naming every species.
        atomic_energies: reference energy ``E0`` per element ``{Z: eV}``: empty (all zero) or
            naming every species.

    Raises:
        ValueError: a mapping that misses one of ``species`` (the message names it).

    Shapes:
        ``forward(per_atom [N], species_index [N]) -> node_energy [N]`` (float64).
    """

    scale: torch.Tensor
    shift: torch.Tensor
    atomic_energies: torch.Tensor

    def __init__(
        self,
        species: Sequence[int],
        scale: float | Mapping[int, float] = 1.0,
        shift: float | Mapping[int, float] = 0.0,
        atomic_energies: Mapping[int, float] | None = None,
    ) -> None:
        super().__init__()
        species = [int(z) for z in species]
        e0 = reference_energies_config(atomic_energies, species)
        self.register_buffer("scale", per_species_tensor(scale, species, "scale"))
        self.register_buffer("shift", per_species_tensor(shift, species, "shift"))
        self.register_buffer("atomic_energies", per_species_tensor(e0 or 0.0, species, "atomic_energies"))

    def forward(self, per_atom: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        """``node_energy [N] = scale[s] * per_atom + shift[s] + E0[s]`` in float64."""
        per_atom = per_atom.to(torch.float64)
        return self.scale[species_index] * per_atom + self.shift[species_index] + self.atomic_energies[species_index]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "PerSpeciesEnergy":
        """Moves the buffers with ``fn`` (device changes) but keeps them float64 (no dtype change)."""
        kept = {name: self._buffers[name] for name in FLOAT64_BUFFERS}
        super()._apply(fn, recurse)
        for name, value in kept.items():
            self._buffers[name] = value.to(device=self._buffers[name].device, dtype=torch.float64)
        return self


def per_species_config(value: float | Mapping[Any, float], species: Sequence[int], name: str) -> float | dict[int, float]:
    """The JSON-able form of a per-species setting (one number, or ``{Z: value}`` for every species)."""
    if isinstance(value, Mapping):
        table = _by_atomic_number(value)
        _check_complete(table, species, name)
        return {int(z): table[int(z)] for z in species}
    return float(value)


def reference_energies_config(atomic_energies: Mapping[Any, float] | None, species: Sequence[int]) -> dict[int, float]:
    """``{Z: E0}`` for every species, or ``{}`` (all zero) when none are given."""
    if not atomic_energies:
        return {}
    return per_species_config(atomic_energies, species, "atomic_energies")  # type: ignore[return-value]


def per_species_tensor(value: float | Mapping[Any, float], species: Sequence[int], name: str) -> torch.Tensor:
    """``[num_species]`` float64 tensor of a per-species setting (see :func:`per_species_config`)."""
    config = per_species_config(value, species, name)
    if isinstance(config, dict):
        return torch.tensor([config[int(z)] for z in species], dtype=torch.float64)
    return torch.full((len(species),), config, dtype=torch.float64)


def _by_atomic_number(value: Mapping[Any, float]) -> dict[int, float]:
    """``{Z: float}`` from a mapping keyed by atomic numbers or symbols (YAML/JSON keys may be strings)."""
    from ase.data import atomic_numbers

    table = {}
    for key, number in value.items():
        if isinstance(key, str) and not key.strip().lstrip("-").isdigit():
            if key not in atomic_numbers:
                raise ValueError(f"unknown element {key!r} in a per-species mapping")
            z = atomic_numbers[key]
        else:
            z = int(key)
        table[z] = float(number)
    return table


def _check_complete(table: Mapping[int, float], species: Sequence[int], name: str) -> None:
    from ase.data import chemical_symbols

    missing = [int(z) for z in species if int(z) not in table]
    if missing:
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in missing)
        raise ValueError(
            f"{name}: no value for {names}; give one number for all species or a mapping naming every "
            f"species of the model ({sorted(int(z) for z in species)})"
        )


def upgrade_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the head's buffers of model files written before it existed (``scale`` -> ``energy_head.scale``)."""
    renamed = {}
    for key, value in state_dict.items():
        renamed[f"energy_head.{key}" if key in FLOAT64_BUFFERS else key] = value
    return renamed
