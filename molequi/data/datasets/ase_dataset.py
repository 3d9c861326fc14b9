"""Any ASE-readable file (extxyz, traj, ASE database, ...) as a cached graph dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from molequi.data.datasets.ase_reader import detect_format, iter_frames
from molequi.data.datasets.builder import build_graphs
from molequi.data.datasets.cache import GraphDataset, cache_file, file_identity
from molequi.data.structure import Structure, structure_from_atoms
from molequi.data.units import energy_unit_factor


class ASEDataset(GraphDataset):
    """Frames of an ASE-readable file as molequi graphs, processed once and cached.

    The file is streamed (:func:`ase.io.iread`, or row by row for databases), so it is
    never held in memory as ``Atoms`` and graphs at the same time.

    Args:
        path: extxyz / xyz / traj / ASE db / any format :mod:`ase.io` reads.
        r_max: neighbour-list cutoff, Angstrom (strict ``<``).
        energy_key, forces_key, stress_key: where each target is stored (calculator
            results, ``atoms.info``, ``atoms.arrays``, or database key-value pairs/data).
            A given key must be present in every frame. None takes the calculator's
            ``energy`` / ``forces`` / ``stress`` where the first frame has them; then
            every frame must have the same ones.
        energy_unit: unit of energies in the file (``"eV"``, ``"meV"``, ``"kcal/mol"``,
            ``"kJ/mol"``, ``"Ha"``, ...); forces are read in ``energy_unit``/A and
            stresses in ``energy_unit``/A^3, all stored in eV-based units.
        index: ASE index string selecting frames (default: all).
        format: ASE format name (default: detected).
        info_keys: extra per-frame values copied from ``atoms.info`` (or database
            fields), unconverted, as ``[1]`` or ``[1, k]`` tensors.
        elements: if given, atomic numbers allowed; other elements raise.
        skip_invalid: leave out invalid frames with a warning that says how many and
            why, instead of raising.
        fill_missing: accept frames that lack a target others have (e.g. stress only on
            periodic frames): the gap is filled with zeros and each graph gets a
            ``has_<target>`` [1] bool flag (False = placeholder, left out by
            :mod:`molequi.training.loss` and :mod:`molequi.training.metrics`; training reads
            ASE files this way). Without it such a file raises, naming the first frame that differs.
        dtype: float dtype of the graphs (default ``torch.get_default_dtype()``).
        cache_dir: folder of the processed file (default :func:`~molequi.data.datasets.cache.default_cache_dir`).
        transform: PyG transform applied on access.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and frame, for an unknown format, a missing key,
            an unknown element, NaN/inf values or atoms closer than 0.1 A.
    """

    def __init__(
        self,
        path: str | Path,
        r_max: float = 5.0,
        energy_key: str | None = None,
        forces_key: str | None = None,
        stress_key: str | None = None,
        energy_unit: str = "eV",
        index: str = ":",
        format: str | None = None,
        info_keys: Sequence[str] = (),
        elements: Iterable[int] | None = None,
        skip_invalid: bool = False,
        fill_missing: bool = False,
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        transform: Callable | None = None,
    ) -> None:
        self.path = Path(path)
        self.energy_unit = energy_unit
        factor = energy_unit_factor(energy_unit)
        fmt = detect_format(self.path, format)
        dtype = dtype or torch.get_default_dtype()
        elements = None if elements is None else sorted(int(e) for e in elements)
        options = dict(
            source=file_identity(self.path), r_max=r_max, energy_key=energy_key, forces_key=forces_key,
            stress_key=stress_key, energy_unit=energy_unit, index=index, format=fmt, info_keys=list(info_keys),
            elements=elements, skip_invalid=skip_invalid, fill_missing=fill_missing, dtype=str(dtype),
        )  # fmt: skip

        def frames() -> Iterator[tuple[int, Structure | ValueError]]:
            for frame, atoms in iter_frames(self.path, index, fmt):
                where = f"{self.path}, frame {frame} (0-based)"
                try:
                    yield (
                        frame,
                        structure_from_atoms(atoms, energy_key, forces_key, stress_key, info_keys, factor, where),
                    )
                except ValueError as err:
                    yield frame, err

        def build():
            graphs, skipped = build_graphs(frames(), r_max, dtype, elements, skip_invalid, fill_missing)
            return graphs, {"source": str(self.path), "energy_unit_in_file": energy_unit, "skipped": skipped}

        super().__init__(cache_file(cache_dir, "ase", options), build, transform)
