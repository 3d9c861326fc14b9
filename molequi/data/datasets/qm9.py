"""QM9 (Ramakrishnan et al., Sci. Data 2014): 133,885 small organic molecules (H, C, N, O, F)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from molequi.data import keys
from molequi.data.datasets.builder import build_graphs
from molequi.data.datasets.cache import GraphDataset, cache_file, file_identity
from molequi.data.datasets.download import download as fetch
from molequi.data.datasets.qm9_sources import (
    PROPERTIES,
    QM9PACK_FILES,
    RAW_UNITS,
    QM9Molecule,
    qm9pack_data_dir,
    read_source,
)
from molequi.data.datasets.qm9_uncharacterized import UNCHARACTERIZED
from molequi.data.datasets.splits import random_split_indices
from molequi.data.structure import Structure
from molequi.data.units import HARTREE

#: The original release (figshare, "Data for 133885 GDB-9 molecules", doi:10.6084/m9.figshare.978904).
TARBALL_URL = "https://ndownloader.figshare.com/files/3195389"
TARBALL = "dsgdb9nsd.xyz.tar.bz2"

#: Units of the stored properties (energies converted from Hartree to eV).
UNITS = {p: ("eV" if u == "Ha" else u) for p, u in RAW_UNITS.items()}

#: Thermochemical atom reference energies (Hartree) of H, C, N, O, F, from the
#: ``atomref.txt`` of the original release (B3LYP/6-31G(2df,p), as the molecules).
ATOMREF_HARTREE = {
    "U0": {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730},
    "U": {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063162, 9: -99.717314},
    "H": {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370},
    "G": {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544},
}

#: Per-graph key holding the QM9 index (1..133,885) of each molecule.
QM9_ID = "qm9_id"


def atomref(prop: str) -> dict[int, float]:
    """Atom reference energies (eV) of ``prop`` in {U0, U, H, G}, by atomic number."""
    if prop not in ATOMREF_HARTREE:
        raise ValueError(f"QM9 has atom references for {sorted(ATOMREF_HARTREE)} only, not {prop!r}")
    return {z: e * HARTREE for z, e in ATOMREF_HARTREE[prop].items()}


class QM9(GraphDataset):
    """QM9 molecules as graphs with all 15 properties, in eV / D / bohr^3 / GHz / cal/mol/K.

    Each graph has ``z, pos, edge_index, edge_shift, cell, pbc``, one ``[1]`` tensor
    per property (keys ``A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv``, units in
    :data:`UNITS`), ``qm9_id`` (the QM9 index) and ``energy`` (= ``energy_property``).

    Source, first found: ``source`` (the original ``dsgdb9nsd.xyz.tar.bz2``, a qm9pack
    data folder or a QM9 npz); ``root/dsgdb9nsd.xyz.tar.bz2`` (fetched first when
    ``download``); the installed ``qm9pack`` package (all 130,831 characterized
    molecules, offline).

    Args:
        root: folder of the raw archive and default cache (``root/processed``); optional.
        r_max: neighbour-list cutoff, Angstrom.
        source: explicit source file or folder (see above).
        subtract_atomrefs: subtract the thermochemical atom references from U0, U, H, G
            (and ``energy``), giving atomization energies.
        energy_property: property copied to ``energy`` (None: no ``energy`` key).
        exclude_uncharacterized: drop the 3,054 molecules that failed QM9's consistency
            check (a warning says how many were dropped from this source).
        max_molecules: keep only the first molecules (in source order) for quick runs.
        download: fetch the original archive into ``root`` if no source is found.
        dtype: float dtype (default ``torch.get_default_dtype()``).
        cache_dir: folder of the processed file.
        transform: PyG transform applied on access.
    """

    units = UNITS

    def __init__(
        self,
        root: str | Path | None = None,
        r_max: float = 5.0,
        source: str | Path | None = None,
        subtract_atomrefs: bool = False,
        energy_property: str | None = "U0",
        exclude_uncharacterized: bool = True,
        max_molecules: int | None = None,
        download: bool = False,
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        transform: Callable | None = None,
    ) -> None:
        if energy_property is not None and energy_property not in PROPERTIES:
            raise ValueError(f"unknown QM9 property {energy_property!r}; choose from {', '.join(PROPERTIES)}")
        root = None if root is None else Path(root)
        path = _find_source(root, source, download)
        dtype = dtype or torch.get_default_dtype()
        identity = [file_identity(path / f) for f in QM9PACK_FILES] if path.is_dir() else file_identity(path)
        options = dict(
            source=identity, r_max=r_max, subtract_atomrefs=subtract_atomrefs, energy_property=energy_property,
            exclude_uncharacterized=exclude_uncharacterized, max_molecules=max_molecules, dtype=str(dtype),
        )  # fmt: skip
        refs = {p: atomref(p) for p in ATOMREF_HARTREE} if subtract_atomrefs else {}
        factors = np.array([HARTREE if RAW_UNITS[p] == "Ha" else 1.0 for p in PROPERTIES])

        def structure(mol: QM9Molecule) -> Structure:
            values = mol.properties * factors
            targets = {p: values[i] for i, p in enumerate(PROPERTIES)}
            for p, ref in refs.items():
                targets[p] = targets[p] - sum(ref[z] for z in mol.numbers.tolist())
            if energy_property is not None:
                targets[keys.ENERGY] = targets[energy_property]
            return Structure.create(
                mol.numbers, mol.positions, targets=targets, where=f"{path}, QM9 molecule {mol.qm9_id}"
            )

        def build():
            dropped = [0]
            molecules = read_source(path)
            if exclude_uncharacterized:
                molecules = _drop_uncharacterized(molecules, dropped)
            ids: list[int] = []

            def frames() -> Iterator[tuple[int, Structure]]:
                for k, mol in enumerate(itertools.islice(molecules, max_molecules)):
                    ids.append(mol.qm9_id)
                    yield k, structure(mol)

            graphs, _ = build_graphs(frames(), r_max, dtype)
            for graph, qm9_id in zip(graphs, ids, strict=True):
                graph[QM9_ID] = torch.tensor([qm9_id])
            if dropped[0]:
                warnings.warn(
                    f"QM9: excluded {dropped[0]} uncharacterized molecules of {path} (failed QM9's consistency check)",
                    stacklevel=4,
                )
            meta = {
                "source": str(path),
                "units": dict(UNITS),
                "subtract_atomrefs": subtract_atomrefs,
                "excluded_uncharacterized": dropped[0],
            }
            return graphs, meta

        super().__init__(
            cache_file(cache_dir if cache_dir is not None else (root / "processed" if root else None), "qm9", options),
            build,
            transform,
        )

    def split(self, sizes: Sequence[int | float] = (110_000, 10_000), seed: int = 0) -> dict[str, QM9]:
        """The standard random split: 110,000 train, 10,000 validation, the rest test.

        Args:
            sizes: train and validation sizes (counts, or fractions for subsets).
            seed: permutation seed; the same seed gives the same split.

        Returns:
            ``{"train": ..., "val": ..., "test": ...}`` views of this dataset.
        """
        train, val, test = random_split_indices(len(self), sizes, seed)
        return {"train": self[train], "val": self[val], "test": self[test]}


def _drop_uncharacterized(molecules: Iterator[QM9Molecule], counter: list[int]) -> Iterator[QM9Molecule]:
    """Skip the uncharacterized molecules, counting them in ``counter[0]``."""
    for mol in molecules:
        if mol.qm9_id in UNCHARACTERIZED:
            counter[0] += 1
            continue
        yield mol


def _find_source(root: Path | None, source: str | Path | None, download: bool) -> Path:
    if source is not None:
        if not Path(source).exists():
            raise FileNotFoundError(f"{source}: no such file or folder (QM9 source)")
        return Path(source)
    if root is not None:
        tarball = root / TARBALL
        if not tarball.exists() and download:
            fetch(TARBALL_URL, tarball)
        if tarball.exists():
            return tarball
    folder = qm9pack_data_dir()
    if folder is not None:
        return folder
    where = f"{root / TARBALL} does not exist and " if root is not None else ""
    raise FileNotFoundError(
        f"QM9: {where}qm9pack is not installed; `pip install qm9pack` (all 130,831 molecules, offline), "
        f"or download {TARBALL_URL} ({TARBALL}) into root, or pass source=<QM9 npz / tarball / qm9pack data folder>"
    )
