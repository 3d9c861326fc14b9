"""NBodyNetwork: Kondor's N-body network (Cormorant), real-valued, sparse and force-trained."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from ase.data import covalent_radii
from e3nn import o3

from ...nn.edge_embedding import EdgeEmbedding, safe_norm
from ...nn.embedding import SpeciesIndex
from ...nn.readout import DipoleReadout
from ..atomistic import AtomisticModel
from ..registry import register_model
from ..inputs import GraphInputs
from ..energy_head import PerSpeciesEnergy, per_species_config, reference_energies_config
from ..potential import scalar_part
from .features import LevelReadout
from .fragments import BOND_FACTOR, Hierarchy, build_hierarchy, fragment_labels, mass_table
from .levels import AtomLevel, EdgeLevel, ParentLevel

#: Length scales (Å) of the child-to-parent displacement embeddings.
FRAGMENT_LENGTH, MOLECULE_LENGTH = 1.0, 3.0
#: Graph attribute that fixes the fragments (any integer label per atom, equal within a fragment).
FRAGMENT_INDEX = "fragment_index"


@register_model
class NBodyNetwork(AtomisticModel):
    r"""An N-body network (Kondor 2018; Cormorant, Anderson, Hy & Kondor 2019) on molequi's layers.

    Every neuron is the covariant state (e3nn irreps) of a subsystem; the only nonlinearities are
    Clebsch-Gordan products (by default). Levels, with ``s = 0..num_levels-1``:

    - **edge level** (:class:`~molequi.models.nbody.levels.EdgeLevel`): edge scalars
      ``g^{s+1}_ij`` from the dot products of ``F^s_i`` and ``F^s_j`` per degree and channel,
      ``g^s_ij`` and a radial basis with a smooth cutoff, mixed per degree;
    - **atom level** (:class:`~molequi.models.nbody.levels.AtomLevel`): ``F^{s+1}_i`` from the
      CG products of the neighbours' states with the filters ``Y(r_ij) w(g^{s+1}_ij)``, the CG
      square of ``F^s_i`` and ``F^s_i``, mixed per irrep;
    - with ``hierarchy=True`` the explicit subsystem hierarchy atoms -> fragments -> molecule
      (:class:`~molequi.models.nbody.levels.ParentLevel`): a fragment's state is the CG
      aggregation of its atoms' final states with spherical harmonics of the atom-to-fragment
      displacement (fragment centre = centre of mass), followed by a CG square; the molecule's
      state is the same aggregation of its fragments. Fragments follow
      :mod:`molequi.models.nbody.fragments` (each heavy atom with its bonded hydrogens),
      computed without gradient from each input, or read from a ``fragment_index`` attribute.
      ``hierarchy=False`` is Cormorant's flat form (atoms only).

    Every level's state is normalised by :class:`~molequi.models.nbody.features.SoftNorm` (block
    RMS driven towards 1, never above ``sqrt(2)``); the CG squares are softly normalised inside the
    ``tensor_product`` family. Energy: invariant readouts (even scalars and mean squares per irrep)
    of every atom level, the fragment and the molecule level are summed,
    ``E_i = scale_{z_i} [sum_s R_s(F^s_i) + m_i / M_f R_frag(P_f) + m_i / M_g R_mol(M_g)] + shift_{z_i} + E0_{z_i}``
    (fragment and molecule terms shared by mass), and forces / stress come by autograd.

    The hierarchy needs non-periodic structures (the molecule's centre of mass is not defined in
    a periodic cell) and ``r_max`` at least the longest X-H bond cutoff. The energy is smooth in
    the positions for a fixed decomposition; it changes discontinuously when a bond to a hydrogen
    forms or breaks and the decomposition changes (fix it with ``fragment_index`` to avoid that).

    Args:
        species: elements the model knows (atomic numbers or symbols).
        r_max: neighbour cutoff (Å).
        num_levels: number of edge + atom levels (default 3).
        hidden_irreps: irreps of every atom, fragment and molecule state (default
            ``"16x0e+16x1o+16x2e"``; the ``tensor_product`` family needs equal multiplicities
            for the channel-wise square to pair channels).
        lmax: degree of the edge and displacement spherical harmonics and of the edge scalars.
        edge_channels: edge scalars per degree (default 8).
        hierarchy: use the explicit atoms -> fragments -> molecule hierarchy (default ``True``).
        bond_factor: multiple of the summed covalent radii that makes a bond (default 1.3).
        nonlinearity: family of the CG square (default ``"tensor_product"``); any family of
            :func:`molequi.nn.nonlinearities.build` that can output ``hidden_irreps`` can be
            swapped in; ``nonlinearity_options`` its options.
        num_radial: Bessel functions of the edge radial basis and Gaussians of the displacement basis.
        radial_hidden: hidden widths of the filter MLPs.
        avg_num_neighbors: normaliser of the neighbour sum (set it from the data statistics).
        atomic_energies: reference energy per element ``{Z: eV}`` (``E0``; default 0).
        scale, shift: per-atom energy scale and shift, one number or ``{Z: value}``.
        readout_hidden: width of the readout MLPs.
        dipole: also predict the molecular dipole ``dipole [G, 3]`` (e Å; QM9's ``mu`` is its norm):
            neutral atomic charges and vectors of the last atom level
            (:class:`~molequi.nn.readout.DipoleReadout`) plus, with the hierarchy, a vector
            (``1o``) of every fragment and of the molecule; needs ``1o`` in ``hidden_irreps``.

    Shapes:
        input: a PyG ``Batch`` or a dict (``z [N]``, ``pos [N, 3]``, optional ``edge_index [2, E]``,
        ``batch [N]``, ``fragment_index [N]``, and for ``hierarchy=False`` also ``edge_shift``,
        ``cell``, ``pbc``); output: ``energy [G]``, ``node_energy [N]``, ``forces [N, 3]``,
        ``stress [G, 3, 3]`` (periodic, ``hierarchy=False``), ``dipole [G, 3]`` with ``dipole=True``,
        and with the hierarchy
        ``fragment_index [N]`` (the labels used: smallest atom index of each fragment).
    """

    def __init__(
        self,
        species: Sequence[int | str],
        r_max: float = 5.0,
        num_levels: int = 3,
        hidden_irreps: str = "16x0e+16x1o+16x2e",
        lmax: int = 2,
        edge_channels: int = 8,
        hierarchy: bool = True,
        bond_factor: float = BOND_FACTOR,
        nonlinearity: str = "tensor_product",
        nonlinearity_options: Mapping[str, Any] | None = None,
        num_radial: int = 8,
        radial_hidden: Sequence[int] = (32,),
        avg_num_neighbors: float = 10.0,
        atomic_energies: Mapping[int, float] | None = None,
        scale: float | Mapping[int, float] = 1.0,
        shift: float | Mapping[int, float] = 0.0,
        readout_hidden: int = 16,
        dipole: bool = False,
    ) -> None:
        super().__init__()
        self.species_index = SpeciesIndex(species)
        species_z = self.species_index.species
        self.r_max = float(r_max)
        hidden = o3.Irreps(hidden_irreps)
        self.config = {
            "species": species_z,
            "r_max": self.r_max,
            "num_levels": int(num_levels),
            "hidden_irreps": str(hidden),
            "lmax": int(lmax),
            "edge_channels": int(edge_channels),
            "hierarchy": bool(hierarchy),
            "bond_factor": float(bond_factor),
            "nonlinearity": nonlinearity,
            "nonlinearity_options": dict(nonlinearity_options or {}),
            "num_radial": int(num_radial),
            "radial_hidden": [int(w) for w in radial_hidden],
            "avg_num_neighbors": float(avg_num_neighbors),
            "atomic_energies": reference_energies_config(atomic_energies, species_z),
            "scale": per_species_config(scale, species_z, "scale"),
            "shift": per_species_config(shift, species_z, "shift"),
            "readout_hidden": int(readout_hidden),
            "dipole": bool(dipole),
        }
        if num_levels < 1:
            raise ValueError(f"NBodyNetwork: num_levels must be at least 1, got {num_levels}")
        self.hierarchy, self.bond_factor = bool(hierarchy), float(bond_factor)
        if self.hierarchy:
            _check_bond_cutoff(species_z, self.r_max, self.bond_factor)
        cg = {"nonlinearity": nonlinearity, "nonlinearity_options": dict(nonlinearity_options or {})}

        self.edge_embedding = EdgeEmbedding(lmax, r_max, num_radial)
        self.embedding = o3.Linear(f"{len(species_z)}x0e", scalar_part(hidden))
        irreps = self.embedding.irreps_out
        edge_levels, atom_levels = [], []
        for s in range(num_levels):
            edge_levels.append(EdgeLevel(irreps, lmax, edge_channels, num_radial, previous=s > 0))
            atom_levels.append(
                AtomLevel(
                    irreps,
                    hidden,
                    self.edge_embedding.irreps_sh,
                    edge_levels[-1].irreps_out.dim,
                    radial_hidden=radial_hidden,
                    avg_num_neighbors=avg_num_neighbors,
                    **cg,
                )
            )
            irreps = atom_levels[-1].irreps_out
        self.edge_levels = torch.nn.ModuleList(edge_levels)
        self.atom_levels = torch.nn.ModuleList(atom_levels)
        self.atom_readouts = torch.nn.ModuleList(LevelReadout(hidden, readout_hidden) for _ in range(num_levels))
        #: irreps of each named level state (see :meth:`level_states`)
        self.level_irreps: dict[str, o3.Irreps] = {}
        for s in range(num_levels):
            self.level_irreps[f"edge_{s + 1}"] = edge_levels[s].irreps_out
            self.level_irreps[f"atom_{s + 1}"] = hidden
        if self.hierarchy:
            parent = {"lmax": lmax, "num_basis": num_radial, "radial_hidden": radial_hidden, **cg}
            self.fragment_level = ParentLevel(hidden, hidden, length=FRAGMENT_LENGTH, **parent)
            self.molecule_level = ParentLevel(hidden, hidden, length=MOLECULE_LENGTH, **parent)
            self.fragment_readout = LevelReadout(hidden, readout_hidden)
            self.molecule_readout = LevelReadout(hidden, readout_hidden)
            self.level_irreps["fragment"] = self.level_irreps["molecule"] = hidden
        self.dipole_readout = DipoleReadout(hidden) if dipole else None
        if dipole and self.hierarchy:
            self.fragment_dipole = o3.Linear(hidden, "1x1o")
            self.molecule_dipole = o3.Linear(hidden, "1x1o")

        self.energy_head = PerSpeciesEnergy(species_z, scale, shift, atomic_energies)
        self.register_buffer("masses", mass_table()[species_z], persistent=False)
        self._given_labels: torch.Tensor | None = None

    def forward(self, data: Any, compute_forces: bool = True, compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """As :meth:`AtomisticModel.forward`; a ``fragment_index [N]`` attribute of ``data`` fixes the fragments."""
        self._given_labels = _read(data, FRAGMENT_INDEX) if self.hierarchy else None
        try:
            return super().forward(data, compute_forces, compute_stress)
        finally:
            self._given_labels = None

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom energies ``[N]`` (and the fragment labels) from the graph and ``edge_vec [E, 3]``."""
        species = self.species_index(inputs.z)  # [N]
        states, hierarchy = self.level_states(inputs, edge_vec)
        per_atom = sum(readout(states[f"atom_{s + 1}"]) for s, readout in enumerate(self.atom_readouts))  # [N]
        out: dict[str, torch.Tensor] = {}
        if hierarchy is not None:
            fragment_energy = self.fragment_readout(states["fragment"])  # [F]
            molecule_energy = self.molecule_readout(states["molecule"])  # [G]
            index = hierarchy.fragment_index
            graph_share = hierarchy.atom_share * hierarchy.fragment_share[index]  # [N] m_i / M_g
            per_atom = per_atom + hierarchy.atom_share * fragment_energy[index]
            per_atom = per_atom + graph_share * molecule_energy[inputs.batch]
            out[FRAGMENT_INDEX] = hierarchy.labels
        if self.dipole_readout is not None:
            out["dipole"] = self._dipole(states, hierarchy, inputs)
        out["node_energy"] = self.energy_head(per_atom, species)  # [N] float64
        return out

    def _dipole(
        self, states: dict[str, torch.Tensor], hierarchy: Hierarchy | None, inputs: GraphInputs
    ) -> torch.Tensor:
        """``[G, 3]``: atomic charges and vectors of the last atom level, plus fragment and molecule vectors."""
        last = states[f"atom_{len(self.atom_levels)}"]
        dipole = self.dipole_readout(last, inputs.pos, inputs.batch, inputs.num_graphs)  # [G, 3]
        if hierarchy is None:
            return dipole
        fragment_vectors = self.fragment_dipole(states["fragment"])  # [F, 3]
        dipole = dipole.index_add(0, hierarchy.fragment_batch, fragment_vectors)
        return dipole + self.molecule_dipole(states["molecule"])

    def level_states(
        self, inputs: GraphInputs, edge_vec: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], Hierarchy | None]:
        """The state of every level, named as in :attr:`level_irreps`, and the hierarchy (or ``None``).

        Returns:
            ``edge_s [E, (lmax + 1) * edge_channels]`` and ``atom_s [N, hidden.dim]`` for
            ``s = 1..num_levels``; with the hierarchy also ``fragment [F, hidden.dim]`` and
            ``molecule [G, hidden.dim]``.
        """
        species = self.species_index(inputs.z)  # [N]
        one_hot = torch.nn.functional.one_hot(species, self.species_index.num_species).to(edge_vec.dtype)
        edge_sh, edge_radial = self.edge_embedding(edge_vec)  # [E, sh], [E, num_radial]
        cutoff = self.edge_embedding.radial.cutoff(safe_norm(edge_vec))  # [E]
        node, edge = self.embedding(one_hot), None  # [N, C x 0e]
        states: dict[str, torch.Tensor] = {}
        for s, (edge_level, atom_level) in enumerate(zip(self.edge_levels, self.atom_levels)):
            edge = edge_level(node, inputs.edge_index, edge_radial, cutoff, edge)  # [E, edge scalars]
            node = atom_level(node, inputs.edge_index, edge_sh, edge)  # [N, hidden]
            states[f"edge_{s + 1}"], states[f"atom_{s + 1}"] = edge, node
        if not self.hierarchy:
            return states, None
        hierarchy = self.hierarchy_of(inputs, edge_vec, species)
        index, batch = hierarchy.fragment_index, hierarchy.fragment_batch
        states["fragment"] = self.fragment_level(
            node, hierarchy.fragment_pos[index] - inputs.pos, index, hierarchy.atoms_per_fragment
        )  # [F, hidden]
        to_graph = hierarchy.graph_pos[batch] - hierarchy.fragment_pos  # [F, 3]
        states["molecule"] = self.molecule_level(
            states["fragment"], to_graph, batch, hierarchy.fragments_per_graph
        )  # [G, hidden]
        return states, hierarchy

    def hierarchy_of(self, inputs: GraphInputs, edge_vec: torch.Tensor, species: torch.Tensor) -> Hierarchy:
        """Fragments (given as ``fragment_index`` or from the bond graph) and their centres of mass.

        Args:
            inputs: the graph; edge_vec: ``[E, 3]``; species: ``[N]`` species indices.

        Raises:
            ValueError: periodic input, or a given ``fragment_index`` of the wrong shape or across graphs.
        """
        if bool(inputs.pbc.any()):
            raise ValueError(
                "NBodyNetwork(hierarchy=True) needs non-periodic structures (a molecule's centre of mass "
                "is undefined in a periodic cell); use hierarchy=False for periodic systems"
            )
        labels = self._given_labels
        if labels is None:
            labels = fragment_labels(inputs.z, inputs.edge_index, edge_vec, self.bond_factor)
        elif labels.shape != inputs.z.shape:
            raise ValueError(f"fragment_index must be [N] = {tuple(inputs.z.shape)}, got {tuple(labels.shape)}")
        masses = self.masses[species].to(inputs.pos.dtype)
        return build_hierarchy(labels.to(inputs.z.device), inputs.batch, inputs.num_graphs, inputs.pos, masses)


def _check_bond_cutoff(species: list[int], r_max: float, bond_factor: float) -> None:
    """Raise unless ``r_max`` covers the longest bond the fragment rule looks at (X-H)."""
    if 1 not in species:
        return
    longest = bond_factor * (covalent_radii[1] + max(covalent_radii[z] for z in species))
    if r_max < longest:
        raise ValueError(
            f"NBodyNetwork: r_max={r_max} is below the longest X-H bond cutoff {longest:.2f} A of the "
            f"fragment rule (bond_factor={bond_factor}); raise r_max or use hierarchy=False"
        )


def _read(data: Any, key: str) -> torch.Tensor | None:
    if isinstance(data, Mapping):
        return data.get(key)
    return getattr(data, key, None)
