"""Fragments of molecules for the N-body hierarchy (atoms -> fragments -> molecule).

**Rule.** Two atoms ``a, b`` are bonded when ``|r_ab| < bond_factor * (R_a + R_b)`` with ``R`` the
covalent radii of ASE (``ase.data.covalent_radii``, Cordero et al. 2008) and ``bond_factor = 1.3``
by default: an X-H bond survives thermal stretches of about 25 % (C-H up to 1.39 Å, O-H 1.26 Å),
while non-bonded X...H contacts, hydrogen bonds included (>= 1.6 Å), stay unbonded. Bonds between
two heavy atoms (``Z > 1``) are cut; the fragments are the connected components of the remaining
bond graph. In practice a fragment is one heavy atom with the
hydrogens bonded to it (CH3, CH2, OH, NH2, C, O, ...); a hydrogen bonded to no heavy atom is a
fragment by itself (or with the hydrogens bonded to it, e.g. H2), and two heavy atoms sharing a
bridging hydrogen form one fragment.

The rule reads only atomic numbers and the bond graph, so the partition does not depend on the
order of the atoms (permuting the atoms permutes the fragment assignment). A fragment is labelled
by the smallest atom index it contains. It is computed from the positions without gradient and is
piecewise constant: the energy is a smooth function of the positions for a fixed decomposition,
and **the decomposition changes when a bond forms or breaks** (an H leaving its heavy atom). To
keep it fixed across such events, pass the labels as a ``fragment_index`` graph attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ase.data import atomic_masses, covalent_radii

#: Default multiple of the summed covalent radii below which two atoms are bonded.
BOND_FACTOR = 1.3


def bond_mask(z: torch.Tensor, edge_index: torch.Tensor, edge_length: torch.Tensor, bond_factor: float) -> torch.Tensor:
    """``[E]`` bool: edge ``(j, i)`` is a heavy-H or H-H covalent bond (heavy-heavy bonds are cut).

    Args:
        z: ``[N]`` atomic numbers.
        edge_index: ``[2, E]`` (row 0 source ``j``, row 1 target ``i``).
        edge_length: ``[E]`` edge lengths (Å).
        bond_factor: multiple of ``R_i + R_j`` below which the atoms are bonded.
    """
    radii = torch.as_tensor(covalent_radii, dtype=edge_length.dtype, device=edge_length.device)
    source, target = z[edge_index[0]], z[edge_index[1]]
    bonded = edge_length < bond_factor * (radii[source] + radii[target])
    return bonded & ((source == 1) | (target == 1))


def connected_components(num_nodes: int, edge_index: torch.Tensor) -> torch.Tensor:
    """``[N]`` long: the smallest node index of each node's connected component.

    ``edge_index [2, E]`` must be symmetric (every edge in both directions), as neighbour lists are.
    """
    labels = torch.arange(num_nodes, device=edge_index.device)
    while True:
        updated = labels.scatter_reduce(0, edge_index[1], labels[edge_index[0]], reduce="amin", include_self=True)
        if torch.equal(updated, labels):
            return labels
        labels = updated


def fragment_labels(
    z: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, bond_factor: float = BOND_FACTOR
) -> torch.Tensor:
    """``[N]`` long: for every atom, the smallest atom index of its fragment (see the module docstring).

    Args:
        z: ``[N]`` atomic numbers.
        edge_index: ``[2, E]`` symmetric neighbour list that contains every bond (cutoff at least
            ``bond_factor * (R_H + R_max)``); edges never join two graphs of a batch, so
            neither do fragments.
        edge_vec: ``[E, 3]`` edge vectors (read without gradient).
        bond_factor: see :func:`bond_mask`.
    """
    with torch.no_grad():
        bonds = bond_mask(z, edge_index, edge_vec.detach().norm(dim=-1), bond_factor)
        return connected_components(z.shape[0], edge_index[:, bonds])


def decompose(z: torch.Tensor, pos: torch.Tensor, bond_factor: float = BOND_FACTOR) -> torch.Tensor:
    """Fragment labels ``[N]`` of one molecule from ``z [N]`` and ``pos [N, 3]`` (all atom pairs).

    Store the result as ``data.fragment_index`` to fix a structure's decomposition.
    """
    num = z.shape[0]
    pairs = torch.ones(num, num, dtype=torch.bool, device=z.device).fill_diagonal_(False).nonzero().T
    return fragment_labels(z, pairs, pos[pairs[0]] - pos[pairs[1]], bond_factor)


def mass_table(dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[119]`` atomic masses (amu) indexed by atomic number (``ase.data.atomic_masses``)."""
    return torch.as_tensor(atomic_masses, dtype=dtype or torch.get_default_dtype())


@dataclass
class Hierarchy:
    """Atoms -> fragments -> molecules of a batch, with mass-weighted parent positions.

    Attributes:
        labels: ``[N]`` fragment label of each atom (smallest atom index of its fragment).
        fragment_index: ``[N]`` contiguous fragment of each atom, ``0..F-1`` (ordered by label).
        fragment_batch: ``[F]`` graph of each fragment.
        fragment_pos: ``[F, 3]`` centre of mass of each fragment (differentiable).
        graph_pos: ``[G, 3]`` centre of mass of each graph (differentiable).
        atom_share: ``[N]`` mass fraction of each atom in its fragment, ``m_a / M_f``.
        fragment_share: ``[F]`` mass fraction of each fragment in its graph, ``M_f / M_g``.
        atoms_per_fragment: ``[F]`` children counts of the fragments.
        fragments_per_graph: ``[G]`` children counts of the graphs.
    """

    labels: torch.Tensor
    fragment_index: torch.Tensor
    fragment_batch: torch.Tensor
    fragment_pos: torch.Tensor
    graph_pos: torch.Tensor
    atom_share: torch.Tensor
    fragment_share: torch.Tensor
    atoms_per_fragment: torch.Tensor
    fragments_per_graph: torch.Tensor

    @property
    def num_fragments(self) -> int:
        return self.fragment_batch.shape[0]


def build_hierarchy(
    labels: torch.Tensor, batch: torch.Tensor, num_graphs: int, pos: torch.Tensor, mass: torch.Tensor
) -> Hierarchy:
    """The hierarchy of fragment ``labels [N]`` (any integers, equal within a fragment).

    Args:
        labels: ``[N]`` fragment labels (e.g. from :func:`fragment_labels`).
        batch: ``[N]`` graph of each atom; ``num_graphs``: ``G``.
        pos: ``[N, 3]`` positions; ``mass``: ``[N]`` atomic masses.

    Raises:
        ValueError: a fragment contains atoms of two graphs.
    """
    _, fragment_index = torch.unique(labels, return_inverse=True)
    num_fragments = int(fragment_index.max()) + 1 if labels.numel() else 0
    first = torch.full((num_fragments,), labels.shape[0], dtype=torch.long, device=labels.device)
    first = first.scatter_reduce(0, fragment_index, torch.arange(labels.shape[0], device=labels.device), "amin")
    fragment_batch = batch[first]
    if bool((fragment_batch[fragment_index] != batch).any()):
        raise ValueError("fragment_index joins atoms of different graphs; fragments must lie within one structure")
    fragment_mass = mass.new_zeros(num_fragments).index_add(0, fragment_index, mass)
    graph_mass = mass.new_zeros(num_graphs).index_add(0, batch, mass)
    weighted = pos * mass[:, None]
    fragment_pos = pos.new_zeros(num_fragments, 3).index_add(0, fragment_index, weighted) / fragment_mass[:, None]
    graph_pos = pos.new_zeros(num_graphs, 3).index_add(0, batch, weighted) / graph_mass[:, None]
    ones = torch.ones_like(labels)
    return Hierarchy(
        labels=labels,
        fragment_index=fragment_index,
        fragment_batch=fragment_batch,
        fragment_pos=fragment_pos,
        graph_pos=graph_pos,
        atom_share=mass / fragment_mass[fragment_index],
        fragment_share=fragment_mass / graph_mass[fragment_batch],
        atoms_per_fragment=ones.new_zeros(num_fragments).index_add(0, fragment_index, ones),
        fragments_per_graph=ones.new_zeros(num_graphs).index_add(0, fragment_batch, ones.new_ones(num_fragments)),
    )
