"""Datasets of a training run: reading the configured files and the seeded train/validation/test split.

QM9 targets (``data.target``) come in three kinds: the energies ``U0, U, H, G`` (the ``energy``
key, with QM9's thermochemical atom references as E0), the dipole norm ``mu`` (Debye, the
per-graph :data:`~molequi.training.loss.DIPOLE_NORM` target of the model's ``dipole``) and the
intensive ``homo, lumo, gap`` (eV, the per-graph :data:`~molequi.training.loss.INTENSIVE` target
of a mean-pooled output). Graphs of the last two kinds carry no ``energy``. Other properties are
read as an energy (summed over atoms).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from ase.data import chemical_symbols
from torch_geometric.data import Data, Dataset, InMemoryDataset

from ..data import keys
from ..data.datasets import QM9, ASEDataset, random_split_indices
from ..data.datasets.qm9 import ATOMREF_HARTREE, atomref
from ..data.datasets.qm9_sources import PROPERTIES as QM9_PROPERTIES
from ..data.statistics import isolated_atom_energies
from ..data.units import energy_unit_factor
from .config import DataConfig
from .loss import DIPOLE_NORM, INTENSIVE

#: QM9 properties learned as per-molecule intensive targets (``loss.intensive_weight``).
QM9_INTENSIVE = ("homo", "lumo", "gap")
#: QM9's dipole norm (Debye), learned through the model's ``dipole`` (``loss.dipole_weight``).
QM9_DIPOLE = "mu"


@dataclass
class Splits:
    """The three datasets and the indices that define them.

    Attributes:
        train, val, test: graph datasets (``test`` may be empty).
        indices: ``{"train", "val", "test"}`` -> indices into the file each was drawn from
            (``path``, or ``test_path`` for the test set when given); stored in checkpoints.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    indices: dict[str, list[int]]

    def has(self, key: str) -> bool:
        """Whether the training graphs carry the target ``key`` (``energy``, ``forces``, ``stress``) for a loss.

        Energies and forces count where at least one training graph has a real value (the loss
        leaves the placeholders of the others out); stress only where every graph has one, since
        the stress of a batch needs every graph periodic.
        """
        if key not in self.train[0]:
            return False
        real = _flags(self.train, keys.availability_key(key))
        return real is None or bool(real.all() if key == keys.STRESS else real.any())


def read_dataset(
    path: str | Path,
    r_max: float,
    dtype: torch.dtype,
    format: str = "ase",
    target: str | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    energy_unit: str = "eV",
    cache_dir: str | None = None,
) -> Dataset:
    """All graphs of one file (see :class:`~molequi.training.config.DataConfig` for the arguments).

    ASE files are read with :class:`~molequi.data.ASEDataset` and ``fill_missing=True``: a target
    that only some frames have (e.g. the stress of the periodic frames of a mixed file) is a zero
    placeholder in the others, flagged ``has_<target>`` False, which the loss and the metrics leave out.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable frames (naming file and frame), an unknown QM9 ``target``, or a
            ``target`` given for an ASE file.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"data file not found: {path} (relative paths start in {Path.cwd()})")
    if format == "qm9":
        return qm9_dataset(path, r_max, dtype, target or "U0", cache_dir)
    if format != "ase":
        raise ValueError(f"unknown data format {format!r}; expected ase or qm9")
    if target is not None:
        raise ValueError("a target property is only read from QM9 (use the energy key for other files)")
    return ASEDataset(
        path, r_max=r_max, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
        energy_unit=energy_unit, fill_missing=True, dtype=dtype, cache_dir=cache_dir,
    )  # fmt: skip


def qm9_dataset(path: str | Path, r_max: float, dtype: torch.dtype, target: str, cache_dir: str | None = None) -> QM9:
    """QM9 graphs whose training target is the property ``target`` (see the module docstring).

    Every target reads the same cached graphs (those of ``U0``): for ``mu`` and the intensive
    targets a transform moves the property to its target key and drops ``energy``.

    Raises:
        ValueError: ``target`` is not a QM9 property.
    """
    if target not in QM9_PROPERTIES:
        raise ValueError(f"unknown QM9 target {target!r}; choose from {', '.join(QM9_PROPERTIES)}")
    molecular = {QM9_DIPOLE: DIPOLE_NORM, **dict.fromkeys(QM9_INTENSIVE, INTENSIVE)}
    if target not in molecular:
        return QM9(source=path, r_max=r_max, energy_property=target, dtype=dtype, cache_dir=cache_dir)
    transform = MolecularTarget(target, molecular[target])
    return QM9(source=path, r_max=r_max, energy_property="U0", dtype=dtype, cache_dir=cache_dir, transform=transform)


class MolecularTarget:
    """PyG transform: the per-graph property ``source`` as the target ``key``, and no ``energy``.

    Args:
        source: the property key of the graphs (e.g. QM9's ``gap``).
        key: the target key the loss and metrics read (``dipole_norm`` or ``intensive``).
    """

    def __init__(self, source: str, key: str) -> None:
        self.source, self.key = source, key

    def __call__(self, graph: Data) -> Data:
        graph[self.key] = graph[self.source]
        del graph[keys.ENERGY]
        return graph

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r} -> {self.key!r})"


def target_key(config: DataConfig) -> str:
    """The per-graph target key the configured data provides: ``energy``, ``dipole_norm`` or ``intensive``."""
    target = config.target if config.format == "qm9" else None
    if target == QM9_DIPOLE:
        return DIPOLE_NORM
    return INTENSIVE if target in QM9_INTENSIVE else keys.ENERGY


def _read(config: DataConfig, path: str, r_max: float, dtype: torch.dtype) -> Dataset:
    return read_dataset(
        path, r_max, dtype, format=config.format, target=config.target, energy_key=config.energy_key,
        forces_key=config.forces_key, stress_key=config.stress_key, energy_unit=config.energy_unit, cache_dir=config.cache_dir,
    )  # fmt: skip


def load_splits(
    config: DataConfig, r_max: float, dtype: torch.dtype, seed: int, indices: dict[str, list[int]] | None = None
) -> Splits:
    """Read the data and split it (or re-apply stored ``indices`` when resuming).

    The training and validation sets are drawn at random (seeded) from ``config.path``; the test
    set is ``config.test_path`` or else the rest of ``config.path``, cut to ``config.test_size``
    frames drawn at random.

    Raises:
        ValueError: sizes that do not fit the file, frames without an energy, stored indices
            that do not fit the file, or validation/test elements missing from the training set.
    """
    full = _read(config, config.path, r_max, dtype)
    if target_key(config) not in full[0]:
        raise ValueError(f"{config.path}: the frames have no energy; set data.energy_key (or data.target for QM9)")
    test_source = _read(config, config.test_path, r_max, dtype) if config.test_path else full
    if indices is None:
        indices = _draw(config, len(full), len(test_source), seed)
    for name, source in (("train", full), ("val", full), ("test", test_source)):
        if indices[name] and max(indices[name]) >= len(source):
            raise ValueError(f"stored {name} indices do not fit the data ({len(source)} frames): has the file changed?")
    splits = Splits(full[indices["train"]], full[indices["val"]], test_source[indices["test"]], indices)
    _check_elements(splits)
    return splits


def _draw(config: DataConfig, num: int, test_num: int, seed: int) -> dict[str, list[int]]:
    """Seeded random train/validation indices (and test indices) into the files."""
    train, val, rest = random_split_indices(num, [config.train_size, config.val_size], seed)
    if len(val) == 0:
        raise ValueError(f"data.val_size {config.val_size} of {num} frames leaves no validation frames")
    test = torch.arange(test_num) if config.test_path else rest
    if config.test_size is not None and config.test_size < len(test):
        keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[: config.test_size]
        test = test[keep.sort().values]
    return {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}


def _flags(dataset: InMemoryDataset, flag: str) -> torch.Tensor | None:
    """``[G]`` per-graph bool ``flag`` of the graphs of ``dataset`` (a view of an in-memory dataset), or None."""
    if flag not in dataset._data:
        return None
    return dataset._data[flag].reshape(-1)[torch.as_tensor(list(dataset.indices()), dtype=torch.long)]


def _elements(dataset: InMemoryDataset) -> set[int]:
    """Atomic numbers present in ``dataset`` (a view of an in-memory dataset), without building its graphs."""
    counts = dataset.slices[keys.ATOMIC_NUMBERS].diff()  # atoms per graph of the whole collated dataset
    selected = torch.zeros(len(counts), dtype=torch.bool)
    selected[torch.as_tensor(list(dataset.indices()), dtype=torch.long)] = True
    z = dataset._data[keys.ATOMIC_NUMBERS]
    return set(z[selected.repeat_interleave(counts)].unique().tolist())


def _check_elements(splits: Splits) -> None:
    """Reject validation or test elements that the training set (hence the model) lacks."""
    known = _elements(splits.train)
    for name, dataset in (("validation", splits.val), ("test", splits.test)):
        extra = _elements(dataset) - known
        if extra:
            names = ", ".join(chemical_symbols[z] for z in sorted(extra))
            raise ValueError(f"the {name} set contains element(s) {names} that the training set lacks; enlarge data.train_size")


def reference_energies(config: DataConfig, r_max: float) -> dict[int | str, float] | None:
    """E0 per element in eV from ``config.isolated_atoms`` (a file of one-atom frames or a mapping), or None.

    Without ``isolated_atoms``, a QM9 energy target (``U0``, ``U``, ``H``, ``G``) takes QM9's
    thermochemical atom references (:func:`molequi.data.datasets.qm9.atomref`), so that the model
    learns atomization energies; other data get None (least squares on the training set).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a frame with more than one atom or a repeated element.
    """
    source = config.isolated_atoms
    if source is None:
        target = config.target or "U0"
        return dict(atomref(target)) if config.format == "qm9" and target in ATOMREF_HARTREE else None
    if isinstance(source, dict):
        factor = energy_unit_factor(config.energy_unit)
        return {element: float(energy) * factor for element, energy in source.items()}
    frames = ASEDataset(source, r_max=r_max, energy_key=config.energy_key, energy_unit=config.energy_unit,
                        dtype=torch.float64, cache_dir=config.cache_dir)  # fmt: skip
    return dict(isolated_atom_energies(frames))
