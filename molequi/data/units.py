"""Energy units accepted by the readers and their conversion factors to eV.

Forces are read in ``<energy unit> / Angstrom`` and stresses in
``<energy unit> / Angstrom^3``; positions are always Angstrom. The factors come from
:mod:`ase.units` (CODATA 2014), so molequi and ASE agree on every conversion.
"""

from __future__ import annotations

from ase import units

#: Conversion factor from each accepted energy unit to eV.
ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": units.kcal / units.mol,
    "kJ/mol": units.kJ / units.mol,
    "Ha": units.Hartree,
    "Hartree": units.Hartree,
    "Ry": units.Rydberg,
}

#: Hartree in eV.
HARTREE = units.Hartree
#: kcal/mol in eV.
KCAL_PER_MOL = units.kcal / units.mol


def energy_unit_factor(unit: str) -> float:
    """Return the factor that converts energies given in ``unit`` to eV.

    Raises:
        ValueError: if ``unit`` is not one of :data:`ENERGY_UNITS`.
    """
    try:
        return ENERGY_UNITS[unit]
    except KeyError:
        known = ", ".join(ENERGY_UNITS)
        raise ValueError(f"unknown energy unit {unit!r}; known units: {known}") from None
