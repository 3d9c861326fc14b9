"""Dataset statistics that a model stores so that inference applies the same shifts and scales."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from ase.data import atomic_numbers as symbol_to_number
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from molequi.data import keys
from molequi.data.neighborlist import neighbor_list


@dataclass
class DatasetStatistics:
    """Per-element reference energies and normalisation constants of a training set.

    Attributes:
        elements: atomic numbers present, ascending.
        atomic_energies: reference energy (eV) of each element, aligned with ``elements``.
        atomic_energies_source: ``"least_squares"`` or ``"given"`` (e.g. isolated atoms).
        avg_num_neighbors: mean number of edges per atom.
        force_rms: root mean square of all force components (eV/A), None without forces.
        per_atom_energy_mean: mean of ``(E - sum_i E0[z_i]) / N`` (eV/atom), None without energies.
        per_atom_energy_std: standard deviation of the same residual (eV/atom).
        num_graphs: graphs seen.
        num_atoms: atoms seen.
        r_max: cutoff the neighbour counts refer to (None if taken from existing edges).
        intensive_mean: mean of the per-graph ``intensive`` target (e.g. a QM9 gap, eV), None
            without one.
        intensive_std: its standard deviation.
    """

    elements: list[int]
    atomic_energies: list[float]
    atomic_energies_source: str
    avg_num_neighbors: float
    force_rms: float | None
    per_atom_energy_mean: float | None
    per_atom_energy_std: float | None
    num_graphs: int
    num_atoms: int
    r_max: float | None = None
    intensive_mean: float | None = None
    intensive_std: float | None = None

    def atomic_energy_map(self) -> dict[int, float]:
        """``{atomic number: reference energy}``."""
        return dict(zip(self.elements, self.atomic_energies))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (safe for ``torch.load(weights_only=True)``, JSON and YAML)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetStatistics:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown DatasetStatistics fields: {sorted(unknown)}")
        return cls(**dict(d))


def compute_statistics(
    dataset: Iterable[Data],
    r_max: float | None = None,
    atomic_energies: Mapping[int | str, float] | None = None,
    batch_size: int = 512,
) -> DatasetStatistics:
    """Statistics of a dataset or list of graphs.

    Per-element reference energies E0 are the least-squares solution of
    ``E_graph ~ sum_elements count * E0`` unless ``atomic_energies`` is given (for
    example isolated-atom energies). With too few distinct compositions (e.g. an MD
    trajectory of one molecule) the fit is underdetermined; the solution nearest the mean
    energy per atom is returned with a warning (one composition: every element gets that
    mean), and isolated-atom energies are the better choice.

    Args:
        dataset: graphs with ``z`` and, optionally, ``energy``, ``forces``, ``intensive``, ``edge_index``;
            graphs flagged ``has_energy`` / ``has_forces`` False do not count for that target.
        r_max: cutoff for the neighbour count; None counts the graphs' ``edge_index``.
        atomic_energies: ``{atomic number or symbol: energy (eV)}``; must cover every element.
        batch_size: graphs per pass (memory only).
    """
    counts, energies, has_energy, intensive, n_atoms, n_edges, force_sq, force_n = [], [], [], [], 0, 0, 0.0, 0
    elements_seen: set[int] = set()
    graphs = dataset if hasattr(dataset, "__getitem__") else list(dataset)
    for batch in DataLoader(graphs, batch_size=batch_size):
        z = batch[keys.ATOMIC_NUMBERS]
        ones = torch.ones_like(z, dtype=torch.float64)
        counts.append(torch.zeros(batch.num_graphs, 119, dtype=torch.float64).index_put_((batch.batch, z), ones, True))
        elements_seen.update(z.unique().tolist())
        n_atoms += z.numel()
        if keys.ENERGY in batch:
            energies.append(batch[keys.ENERGY].to(torch.float64).reshape(-1))
            has_energy.append(_available(batch, keys.ENERGY))
        if keys.FORCES in batch:
            forces = batch[keys.FORCES].to(torch.float64)[_available(batch, keys.FORCES)[batch.batch]]
            force_sq += float(forces.square().sum())
            force_n += forces.numel()
        if keys.INTENSIVE in batch:
            intensive.append(batch[keys.INTENSIVE].to(torch.float64).reshape(-1)[_available(batch, keys.INTENSIVE)])
        n_edges += _count_edges(batch, r_max)
    if n_atoms == 0:
        raise ValueError("compute_statistics: the dataset is empty")
    elements = sorted(elements_seen)
    composition = torch.cat(counts)[:, elements]  # [G, n_elements]
    energy = None
    if sum(e.numel() for e in energies) == composition.shape[0]:  # every graph has an energy key
        mask = torch.cat(has_energy)
        energy, composition_e = torch.cat(energies)[mask], composition[mask]

    if atomic_energies is not None:
        e0 = _given_energies(atomic_energies, elements)
        source = "given"
    elif energy is not None and energy.numel() > 0:
        e0 = _least_squares(composition_e, energy)
        source = "least_squares"
    else:
        e0 = torch.zeros(len(elements), dtype=torch.float64)
        source = "none"

    mean = std = None
    if energy is not None and energy.numel() > 0:
        residual = (energy - composition_e @ e0) / composition_e.sum(dim=1)
        mean, std = float(residual.mean()), float(residual.std(unbiased=False))
    target = torch.cat(intensive) if intensive else torch.zeros(0, dtype=torch.float64)
    return DatasetStatistics(
        elements=elements,
        atomic_energies=e0.tolist(),
        atomic_energies_source=source,
        avg_num_neighbors=n_edges / n_atoms,
        force_rms=(force_sq / force_n) ** 0.5 if force_n else None,
        per_atom_energy_mean=mean,
        per_atom_energy_std=std,
        num_graphs=composition.shape[0],
        num_atoms=n_atoms,
        r_max=r_max,
        intensive_mean=float(target.mean()) if target.numel() else None,
        intensive_std=float(target.std(unbiased=False)) if target.numel() else None,
    )


def _available(batch: Data, target: str) -> torch.Tensor:
    """[B] bool: graphs whose ``target`` is real (not a ``fill_missing`` placeholder)."""
    flag = keys.availability_key(target)
    return batch[flag].reshape(-1) if flag in batch else torch.ones(batch.num_graphs, dtype=torch.bool)


def _count_edges(batch: Data, r_max: float | None) -> int:
    if r_max is None:
        if keys.EDGE_INDEX not in batch:
            raise ValueError("compute_statistics: graphs have no edge_index; pass r_max")
        return batch[keys.EDGE_INDEX].shape[1]
    edge_index, _ = neighbor_list(batch[keys.POSITIONS], r_max, batch.get(keys.CELL), batch.get(keys.PBC), batch.batch)
    return edge_index.shape[1]


def _least_squares(composition: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Least-squares E0 [n_elements] from composition [G, n] and energy [G], nearest the mean per-atom energy.

    ``E0 = mu + pinv(C) (E - C mu)`` with ``mu`` the mean energy per atom: the unique least-squares
    solution when the compositions determine it, and otherwise the one closest to ``mu`` for every
    element. For a single composition (an MD trajectory of one molecule) every element gets ``mu``
    (the documented fallback; the minimum-norm solution gave per-element energies such as
    H -875 eV on aspirin, which only matter, badly, when the model meets another composition).
    """
    mu = float((energy / composition.sum(dim=1)).mean())
    rank = int(torch.linalg.matrix_rank(composition))
    if rank < composition.shape[1]:
        warnings.warn(
            f"compute_statistics: the compositions span only {rank} of {composition.shape[1]} elements, so per-element "
            f"reference energies are not determined by the data; using the least-squares solution nearest the mean "
            f"energy per atom ({mu:.4f} eV). Pass atomic_energies (e.g. isolated-atom energies) for physical references.",
            stacklevel=3,
        )
    baseline = torch.full((composition.shape[1],), mu, dtype=torch.float64)
    return baseline + torch.linalg.pinv(composition) @ (energy - composition @ baseline)


def _given_energies(atomic_energies: Mapping[int | str, float], elements: list[int]) -> torch.Tensor:
    table = {symbol_to_number[k] if isinstance(k, str) else int(k): float(v) for k, v in atomic_energies.items()}
    missing = [z for z in elements if z not in table]
    if missing:
        raise ValueError(f"compute_statistics: atomic_energies has no entry for atomic number(s) {missing}")
    return torch.tensor([table[z] for z in elements], dtype=torch.float64)


def isolated_atom_energies(graphs: Iterable[Data]) -> dict[int, float]:
    """``{atomic number: energy}`` from single-atom graphs (e.g. an ``isolated_atoms.xyz``).

    Raises:
        ValueError: if a graph has more than one atom or no energy, or an element repeats.
    """
    table: dict[int, float] = {}
    for k, graph in enumerate(graphs):
        if graph.num_nodes != 1 or keys.ENERGY not in graph:
            raise ValueError(f"isolated_atom_energies: graph {k} is not a single atom with an energy")
        z = int(graph[keys.ATOMIC_NUMBERS][0])
        if z in table:
            raise ValueError(f"isolated_atom_energies: element {z} appears twice (graph {k})")
        table[z] = float(graph[keys.ENERGY].reshape(-1)[0])
    return table
