"""ASE files whose frames carry different targets (stress on the periodic frames only), as one training set.

:class:`molequi.data.ASEDataset` rejects a file in which some frames have a target that
others lack, because such graphs cannot share a batch. A training set often mixes molecules or
clusters (energy, forces) with bulk cells (energy, forces, stress), as the shipped demo dataset
does. :class:`ASETrainingSet` reads such files with the same building blocks and cache, keeping
the targets present in every frame and leaving out the others with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data.datasets.ase_reader import detect_format, iter_frames
from ..data.datasets.builder import build_graphs
from ..data.datasets.cache import GraphDataset, cache_file, file_identity
from ..data.structure import Structure, structure_from_atoms
from ..data.units import energy_unit_factor

logger = logging.getLogger(__name__)


class ASETrainingSet(GraphDataset):
    """All frames of an ASE-readable file as graphs with the targets that every frame has.

    Args:
        path, r_max, energy_key, forces_key, stress_key, energy_unit, dtype, cache_dir: as for
            :class:`molequi.data.ASEDataset`. A key that is named must be present in every frame.

    Attributes:
        meta: ``{"source", "energy_unit_in_file", "skipped", "dropped_targets"}``; the last lists
            the targets left out because only some frames have them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming file and frame, for a missing named key, an unknown element, NaN/inf
            values or atoms closer than 0.1 A.
    """

    def __init__(
        self,
        path: str | Path,
        r_max: float,
        energy_key: str | None = None,
        forces_key: str | None = None,
        stress_key: str | None = None,
        energy_unit: str = "eV",
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        path = Path(path)
        fmt = detect_format(path)
        factor = energy_unit_factor(energy_unit)
        dtype = dtype or torch.get_default_dtype()
        options = dict(
            source=file_identity(path), r_max=r_max, energy_key=energy_key, forces_key=forces_key,
            stress_key=stress_key, energy_unit=energy_unit, format=fmt, dtype=str(dtype),
        )  # fmt: skip

        def build():
            frames: list[tuple[int, Structure]] = []
            for frame, atoms in iter_frames(path, ":", fmt):
                where = f"{path}, frame {frame}"
                frames.append((frame, structure_from_atoms(atoms, energy_key, forces_key, stress_key, (), factor, where)))
            present = [set(s.targets) for _, s in frames]
            common = set.intersection(*present) if present else set()
            dropped = sorted(set.union(*present) - common) if present else []
            if dropped:
                logger.warning("%s: targets %s are present in only some frames and are left out", path, dropped)
                for _, structure in frames:
                    for key in dropped:
                        structure.targets.pop(key, None)
            graphs, skipped = build_graphs(frames, r_max, dtype)
            return graphs, {"source": str(path), "energy_unit_in_file": energy_unit, "skipped": skipped, "dropped_targets": dropped}

        super().__init__(cache_file(cache_dir, "ase-training", options), build)
