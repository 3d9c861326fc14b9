r"""Fragments and molecules of the N-body hierarchy (atoms -> fragments -> molecules).

**Bonds.** Two atoms ``a, b`` are bonded when ``|r_ab| < bond_factor * (R_a + R_b)`` with ``R`` the
covalent radii of ASE (``ase.data.covalent_radii``, Cordero et al. 2008) and ``bond_factor = 1.3``
by default: bonds survive thermal stretches of about 25 % (C-H up to 1.39 Å, C-C 1.98 Å), while
non-bonded contacts, hydrogen bonds included (O...H >= 1.6 Å), stay unbonded.

**Fragments** are the connected components of the bond graph after cutting some heavy-heavy
bonds (``Z > 1`` at both ends). A heavy-heavy bond is **kept** when

1. it is a ring bond (it lies on a cycle of the heavy-atom graph, i.e. it is no bridge), or
2. one of its atoms is terminal (exactly one heavy neighbour: CH3, OH, =O, NH2, F, Cl, ...), or
3. both atoms are acyclic (on no ring bond) and one of them is no carbon (ethers, esters, amides:
   C-O-C, O-C(=O), N-C(=O) chains);

every other heavy-heavy bond is cut. Every bond to a hydrogen is kept, so a fragment holds its
hydrogens. The result is a set of chemical groups of several heavy atoms: ring systems (fused
rings together) with their terminal substituents, and acyclic functional groups. Examples:
ethanol and acetic acid are one fragment each; aspirin splits into the C6H4 ring, the carboxylic
acid COOH and the acetoxy group OC(=O)CH3 (6, 3 and 4 heavy atoms); octane into CH3CH2,
four CH2 and CH2CH3 (an interior chain CH2 with no terminal neighbour stays alone); water or
methane are one fragment. A hydrogen bonded to no heavy atom is a fragment by itself (or with the
hydrogens bonded to it, e.g. H2).

**Molecules** are the connected components of the graph whose links are the heavy-heavy bonds and
the memberships of the fragments: for computed fragments, the connected components of the bond
graph; for given (frozen) fragments, a hydrogen stays in its fragment's molecule whatever its
distances.

The rules read only atomic numbers and the bond graph (ring bonds, terminal atoms and the element
are graph invariants), so the partitions do not depend on the order of the atoms: permuting the
atoms permutes the fragment and molecule assignments. A fragment or molecule is labelled by the
smallest atom index it contains. Both are computed without gradient and are piecewise constant:
the energy is a smooth function of the positions for fixed labels, and **the decomposition
changes when a bond forms or breaks**. To keep it fixed across such events (molecular dynamics),
pass the labels of the first frame as a ``fragment_index`` graph attribute; then only a
heavy-heavy bond between two fragments that forms or breaks changes the molecules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ase.data import atomic_masses, covalent_radii

#: Default multiple of the summed covalent radii below which two atoms are bonded.
BOND_FACTOR = 1.3


def bond_mask(z: torch.Tensor, edge_index: torch.Tensor, edge_length: torch.Tensor, bond_factor: float) -> torch.Tensor:
    """``[E]`` bool: edge ``(j, i)`` is a covalent bond, ``|r_ij| < bond_factor (R_i + R_j)``.

    Args:
        z: ``[N]`` atomic numbers.
        edge_index: ``[2, E]`` (row 0 source ``j``, row 1 target ``i``).
        edge_length: ``[E]`` edge lengths (Å).
        bond_factor: multiple of ``R_i + R_j`` below which the atoms are bonded.
    """
    radii = torch.as_tensor(covalent_radii, dtype=edge_length.dtype, device=edge_length.device)
    return edge_length < bond_factor * (radii[z[edge_index[0]]] + radii[z[edge_index[1]]])


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


def bridges(num_nodes: int, edges: list[tuple[int, int]]) -> list[bool]:
    """Which of the undirected ``edges`` (each pair once) are bridges (on no cycle); Tarjan's lowlink, iterative.

    The set of bridges is a property of the graph, so it does not depend on the order of nodes or edges.
    """
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(num_nodes)]
    for k, (a, b) in enumerate(edges):
        adjacency[a].append((b, k))
        adjacency[b].append((a, k))
    discovered, low = [-1] * num_nodes, [0] * num_nodes
    is_bridge, clock = [False] * len(edges), 0
    for root in range(num_nodes):
        if discovered[root] >= 0:
            continue
        discovered[root] = low[root] = clock
        clock += 1
        stack = [(root, -1, iter(adjacency[root]))]
        while stack:
            node, via, neighbours = stack[-1]
            for other, edge in neighbours:
                if edge == via:
                    continue
                if discovered[other] < 0:
                    discovered[other] = low[other] = clock
                    clock += 1
                    stack.append((other, edge, iter(adjacency[other])))
                    break
                low[node] = min(low[node], discovered[other])
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    is_bridge[via] = low[node] > discovered[parent]
    return is_bridge


def kept_heavy_bonds(z: torch.Tensor, heavy: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: which heavy-heavy bonds ``heavy [2, B]`` (both directions) the fragment rule keeps.

    See the module docstring (rules 1-3); ``z [N]`` atomic numbers.
    """
    num = z.shape[0]
    pairs = heavy[:, heavy[0] < heavy[1]].cpu()
    unique = [(int(a), int(b)) for a, b in pairs.T.tolist()]
    index = {pair: k for k, pair in enumerate(unique)}
    ring_pairs = torch.tensor([not bridge for bridge in bridges(num, unique)], dtype=torch.bool)
    lookup = [index[(min(a, b), max(a, b))] for a, b in heavy.cpu().T.tolist()]
    ring = ring_pairs[torch.tensor(lookup, dtype=torch.long)].to(z.device) if lookup else heavy.new_zeros(0).bool()
    degree = torch.zeros(num, dtype=torch.long, device=z.device).index_add_(0, heavy[1], torch.ones_like(heavy[1]))
    cyclic = torch.zeros(num, dtype=torch.bool, device=z.device).index_fill_(0, heavy[1][ring], True)
    source, target = heavy
    terminal = (degree[source] == 1) | (degree[target] == 1)
    acyclic_hetero = ~cyclic[source] & ~cyclic[target] & ((z[source] != 6) | (z[target] != 6))
    return ring | terminal | acyclic_hetero


def bonds_of(z: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, bond_factor: float) -> torch.Tensor:
    """``[2, B]``: the edges of ``edge_index [2, E]`` that are bonds (:func:`bond_mask`), without gradient."""
    with torch.no_grad():
        return edge_index[:, bond_mask(z, edge_index, edge_vec.detach().norm(dim=-1), bond_factor)]


def fragments_from_bonds(z: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
    """``[N]``: smallest atom index of each atom's fragment, from ``z [N]`` and ``bonds [2, B]`` (both directions)."""
    with torch.no_grad():
        heavy_bond = (z[bonds[0]] > 1) & (z[bonds[1]] > 1)
        heavy = bonds[:, heavy_bond]
        kept = torch.cat([bonds[:, ~heavy_bond], heavy[:, kept_heavy_bonds(z, heavy)]], dim=1)
        return connected_components(z.shape[0], kept)


def molecules_from_bonds(z: torch.Tensor, bonds: torch.Tensor, fragments: torch.Tensor) -> torch.Tensor:
    """``[N]``: smallest atom index of each atom's molecule: ``fragments [N]`` joined by heavy-heavy ``bonds [2, B]``.

    ``fragments`` holds any integer labels, equal within a fragment.
    """
    with torch.no_grad():
        num = z.shape[0]
        heavy = bonds[:, (z[bonds[0]] > 1) & (z[bonds[1]] > 1)]
        _, fragment = torch.unique(fragments, return_inverse=True)
        member = torch.stack([torch.arange(num, device=z.device), num + fragment])  # atom -> node N + fragment
        num_fragments = int(fragment.max()) + 1 if num else 0
        return connected_components(num + num_fragments, torch.cat([heavy, member, member.flip(0)], dim=1))[:num]


def fragment_labels(
    z: torch.Tensor, edge_index: torch.Tensor, edge_vec: torch.Tensor, bond_factor: float = BOND_FACTOR
) -> torch.Tensor:
    """``[N]`` long: for every atom, the smallest atom index of its fragment (see the module docstring).

    Args:
        z: ``[N]`` atomic numbers.
        edge_index: ``[2, E]`` symmetric neighbour list that contains every bond (cutoff at least
            ``bond_factor * 2 R_max``); edges never join two graphs of a batch, so neither do fragments.
        edge_vec: ``[E, 3]`` edge vectors (read without gradient).
        bond_factor: see :func:`bond_mask`.
    """
    return fragments_from_bonds(z, bonds_of(z, edge_index, edge_vec, bond_factor))


def decompose(z: torch.Tensor, pos: torch.Tensor, bond_factor: float = BOND_FACTOR) -> torch.Tensor:
    """Fragment labels ``[N]`` of a structure from ``z [N]`` and ``pos [N, 3]`` (all atom pairs).

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
    """Atoms -> fragments -> molecules of a batch, with mass-weighted centres.

    Attributes:
        labels: ``[N]`` fragment label of each atom (as given, or the smallest atom index of its fragment).
        atom_fragment: ``[N]`` contiguous fragment of each atom, ``0..F-1`` (ordered by label).
        fragment_molecule: ``[F]`` contiguous molecule of each fragment, ``0..M-1``.
        fragment_batch: ``[F]`` graph of each fragment.
        fragment_pos: ``[F, 3]`` centre of mass of each fragment (differentiable).
        molecule_pos: ``[M, 3]`` centre of mass of each molecule (differentiable).
        atoms_per_fragment: ``[F]``; fragments_per_molecule: ``[M]`` children counts.
    """

    labels: torch.Tensor
    atom_fragment: torch.Tensor
    fragment_molecule: torch.Tensor
    fragment_batch: torch.Tensor
    fragment_pos: torch.Tensor
    molecule_pos: torch.Tensor
    atoms_per_fragment: torch.Tensor
    fragments_per_molecule: torch.Tensor

    @property
    def num_fragments(self) -> int:
        return self.fragment_batch.shape[0]

    @property
    def num_molecules(self) -> int:
        return self.molecule_pos.shape[0]


def _first_members(index: torch.Tensor, count: int) -> torch.Tensor:
    """``[count]``: the first row of each group of ``index [R]`` (values ``0..count-1``)."""
    first = torch.full((count,), index.shape[0], dtype=torch.long, device=index.device)
    return first.scatter_reduce(0, index, torch.arange(index.shape[0], device=index.device), "amin")


def build_hierarchy(
    labels: torch.Tensor, molecules: torch.Tensor, batch: torch.Tensor, pos: torch.Tensor, mass: torch.Tensor
) -> Hierarchy:
    """The hierarchy of fragment ``labels [N]`` within ``molecules [N]`` (any integers, equal within a group).

    Args:
        labels: ``[N]`` fragment labels (e.g. from :func:`fragment_labels`).
        molecules: ``[N]`` molecule labels (e.g. from :func:`molecules_from_bonds`); every fragment lies in one.
        batch: ``[N]`` graph of each atom; pos: ``[N, 3]`` positions; mass: ``[N]`` atomic masses.

    Raises:
        ValueError: a fragment contains atoms of two graphs.
    """
    _, atom_fragment = torch.unique(labels, return_inverse=True)
    num_fragments = int(atom_fragment.max()) + 1 if labels.numel() else 0
    first = _first_members(atom_fragment, num_fragments)
    fragment_batch = batch[first]
    if bool((fragment_batch[atom_fragment] != batch).any()):
        raise ValueError("fragment_index joins atoms of different graphs; fragments must lie within one structure")
    _, fragment_molecule = torch.unique(molecules[first], return_inverse=True)
    num_molecules = int(fragment_molecule.max()) + 1 if labels.numel() else 0
    atom_molecule = fragment_molecule[atom_fragment]
    fragment_mass = mass.new_zeros(num_fragments).index_add(0, atom_fragment, mass)
    molecule_mass = mass.new_zeros(num_molecules).index_add(0, atom_molecule, mass)
    weighted = pos * mass[:, None]
    fragment_pos = pos.new_zeros(num_fragments, 3).index_add(0, atom_fragment, weighted) / fragment_mass[:, None]
    molecule_pos = pos.new_zeros(num_molecules, 3).index_add(0, atom_molecule, weighted) / molecule_mass[:, None]
    ones = torch.ones_like(atom_fragment)
    return Hierarchy(
        labels=labels,
        atom_fragment=atom_fragment,
        fragment_molecule=fragment_molecule,
        fragment_batch=fragment_batch,
        fragment_pos=fragment_pos,
        molecule_pos=molecule_pos,
        atoms_per_fragment=ones.new_zeros(num_fragments).index_add(0, atom_fragment, ones),
        fragments_per_molecule=ones.new_zeros(num_molecules).index_add(0, fragment_molecule, ones[:num_fragments]),
    )


def fragment_graph(pos: torch.Tensor, batch: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``[2, E_f]``: pairs of fragments of one graph, centres ``pos [F, 3]`` closer than ``cutoff`` (both directions).

    Computed without gradient over all pairs of each graph (``batch [F]``); fragments are few.
    """
    with torch.no_grad():
        close = torch.cdist(pos, pos) < cutoff
        close &= batch[:, None] == batch[None, :]
        close.fill_diagonal_(False)
        return close.nonzero().T.flip(0).contiguous()
