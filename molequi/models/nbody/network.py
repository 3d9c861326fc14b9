"""NBodyNetwork: Kondor's N-body network (Cormorant), real-valued, sparse and force-trained."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from ase.data import covalent_radii
from e3nn import o3

from ...data.keys import FRAGMENT_INDEX
from ...nn.edge_embedding import EdgeEmbedding, edge_vectors, safe_norm
from ...nn.embedding import SpeciesIndex
from ...nn.readout import DipoleReadout
from ..atomistic import AtomisticModel
from ..energy_head import PerSpeciesEnergy, per_species_config, reference_energies_config
from ..inputs import GraphInputs
from ..potential import scalar_part
from ..registry import register_model
from .features import LevelReadout
from .fragments import (
    BOND_FACTOR,
    Hierarchy,
    bonds_of,
    build_hierarchy,
    fragment_graph,
    fragments_from_bonds,
    mass_table,
    molecules_from_bonds,
)
from .levels import AtomLevel, EdgeLevel
from .tiers import ParentLevel, TopDownLevel

__all__ = ["FRAGMENT_INDEX", "NBodyNetwork"]

#: Length scales (Å) of the atom-fragment and fragment-molecule displacement embeddings.
FRAGMENT_LENGTH, MOLECULE_LENGTH = 1.5, 3.0
#: Normaliser of the sum over fragment-graph neighbours (a constant, so the sum stays smooth).
FRAGMENT_NEIGHBORS = 4.0


@register_model
class NBodyNetwork(AtomisticModel):
    r"""An N-body network (Kondor 2018; Cormorant, Anderson, Hy & Kondor 2019) on molequi's layers.

    Every neuron is the covariant state (e3nn irreps) of a subsystem. Levels, ``s = 0..num_levels-1``:

    - **edge level** (:class:`~molequi.models.nbody.levels.EdgeLevel`): edge scalars
      ``g^{s+1}_ij`` from the dot products of ``F^s_i`` and ``F^s_j`` per degree and channel,
      ``g^s_ij`` and a radial basis with a smooth cutoff, mixed per degree;
    - **atom level** (:class:`~molequi.models.nbody.levels.AtomLevel`): ``F^{s+1}_i`` from the
      CG products of the neighbours' states with the filters ``Y(r_ij) w(g^{s+1}_ij)``, the CG
      square of ``F^s_i`` and ``F^s_i``, mixed per irrep.

    With ``hierarchy=True`` the subsystems above the atoms (:mod:`~molequi.models.nbody.tiers`,
    all built from :class:`~molequi.nn.EquivariantConv` on bipartite graphs): **fragments**
    (ring systems and functional groups, :mod:`~molequi.models.nbody.fragments`; centre = centre
    of mass) aggregate a per-irrep mix of *every* atom level's states; ``fragment_layers``
    **fragment-graph** levels exchange messages between fragments whose centres lie within
    ``fragment_cutoff`` (smooth cutoff); **molecules** (connected components of the bond graph)
    aggregate their fragments; a **top-down** pass sends the fragment and molecule states back to
    their atoms (one convolution, behind a learnt gain that starts at 0), whose final state
    ``atom_down`` is read out with the others.
    The fragments are computed without gradient from each input, or read from ``fragment_index``
    (freeze them for molecular dynamics); the output returns them. ``hierarchy=False`` is
    Cormorant's flat form (atoms only).

    Nonlinearities: the CG squares (channel-wise Clebsch-Gordan products with the default
    ``tensor_product`` family, softly normalised; any family of
    :func:`molequi.nn.nonlinearities.build` can be swapped in), normalised SiLUs in the edge
    levels, in the filter MLPs and in the readout MLPs, and the gain of
    :class:`~molequi.models.nbody.features.SoftNorm`, which ends every atom, fragment, molecule and
    top-down level: it maps the mean square ``v`` of each irrep block of a row to
    ``1.1 v / (0.1 + v) < 1.1`` (RMS below ``sqrt(1.1)``); edge scalars are normalised the same
    way times the cutoff envelope. Energy: invariant readouts (even scalars and mean squares per
    irrep) of every atom level and, with the hierarchy, of ``atom_down``, summed per atom,
    ``E_i = scale_{z_i} sum_k R_k(F^k_i) + shift_{z_i} + E0_{z_i}``, and forces / stress by autograd.

    Every term is local to a molecule or within a cutoff, so the energies of molecules farther
    apart than ``r_max`` and ``fragment_cutoff`` add up. The hierarchy needs non-periodic
    structures and ``r_max`` at least the longest bond cutoff of the species. The energy is smooth
    in the positions for fixed fragments; they change when a bond forms or breaks (pass
    ``fragment_index`` to keep them).

    Args:
        species: elements the model knows (atomic numbers or symbols).
        r_max: neighbour cutoff (Å).
        num_levels: number of edge + atom levels (default 3).
        hidden_irreps: irreps of every atom, fragment and molecule state (default
            ``"16x0e+16x1o+16x2e"``; the ``tensor_product`` family needs equal multiplicities).
        lmax: degree of the edge and displacement spherical harmonics and of the edge scalars.
        edge_channels: edge scalars per degree (default 8).
        hierarchy: use the atoms -> fragments -> molecules hierarchy (default ``True``).
        bond_factor: multiple of the summed covalent radii that makes a bond (default 1.3).
        fragment_cutoff: cutoff (Å) of the fragment graph on the fragment centres (default 6).
        fragment_layers: number of fragment-graph levels (default 1).
        nonlinearity, nonlinearity_options: family of the CG square (default ``"tensor_product"``).
        num_radial: Bessel functions of the radial bases and Gaussians of the displacement bases.
        radial_hidden: hidden widths of the filter MLPs.
        avg_num_neighbors: normaliser of the neighbour sum (set it from the data statistics).
        atomic_energies: reference energy per element ``{Z: eV}`` (``E0``; default 0).
        scale, shift: per-atom energy scale and shift, one number or ``{Z: value}``.
        readout_hidden: width of the readout MLPs.
        species_mix: make the per-irrep mix ``W`` of every atom level depend on the species of
            the atom (a tensor product with its one-hot species, as NequIP's self-interaction;
            default ``False``: the species enter through the embedding only).
        dipole: also predict the molecular dipole ``dipole [G, 3]`` (e Å; QM9's ``mu`` is its
            norm) from neutral atomic charges and vectors of the last atom state (``atom_down``
            with the hierarchy; :class:`~molequi.nn.readout.DipoleReadout`); needs ``1o``.

    Shapes:
        input: a PyG ``Batch`` or a dict (``z [N]``, ``pos [N, 3]``, optional ``edge_index [2, E]``,
        ``batch [N]``, ``fragment_index [N]``, and for ``hierarchy=False`` also ``edge_shift``,
        ``cell``, ``pbc``); output: ``energy [G]``, ``node_energy [N]``, ``forces [N, 3]``,
        ``stress [G, 3, 3]`` (periodic, ``hierarchy=False``), ``dipole [G, 3]`` with ``dipole=True``,
        and with the hierarchy ``fragment_index [N]`` (the labels used: as given, else the smallest
        atom index of each fragment).
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
        fragment_cutoff: float = 6.0,
        fragment_layers: int = 1,
        nonlinearity: str = "tensor_product",
        nonlinearity_options: Mapping[str, Any] | None = None,
        num_radial: int = 8,
        radial_hidden: Sequence[int] = (32,),
        avg_num_neighbors: float = 10.0,
        atomic_energies: Mapping[int, float] | None = None,
        scale: float | Mapping[int, float] = 1.0,
        shift: float | Mapping[int, float] = 0.0,
        readout_hidden: int = 16,
        species_mix: bool = False,
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
            "fragment_cutoff": float(fragment_cutoff),
            "fragment_layers": int(fragment_layers),
            "nonlinearity": nonlinearity,
            "nonlinearity_options": dict(nonlinearity_options or {}),
            "num_radial": int(num_radial),
            "radial_hidden": [int(w) for w in radial_hidden],
            "avg_num_neighbors": float(avg_num_neighbors),
            "atomic_energies": reference_energies_config(atomic_energies, species_z),
            "scale": per_species_config(scale, species_z, "scale"),
            "shift": per_species_config(shift, species_z, "shift"),
            "readout_hidden": int(readout_hidden),
            "species_mix": bool(species_mix),
            "dipole": bool(dipole),
        }
        if num_levels < 1:
            raise ValueError(f"NBodyNetwork: num_levels must be at least 1, got {num_levels}")
        if fragment_layers < 0 or not fragment_cutoff > 0:
            raise ValueError(
                f"NBodyNetwork: fragment_layers must be >= 0 and fragment_cutoff > 0, got {fragment_layers} "
                f"and {fragment_cutoff}"
            )
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
                    irreps_node_attr=f"{len(species_z)}x0e" if species_mix else None,
                    **cg,
                )
            )
            irreps = atom_levels[-1].irreps_out
        self.edge_levels = torch.nn.ModuleList(edge_levels)
        self.atom_levels = torch.nn.ModuleList(atom_levels)
        readouts = num_levels + (1 if self.hierarchy else 0)
        self.atom_readouts = torch.nn.ModuleList(LevelReadout(hidden, readout_hidden) for _ in range(readouts))
        #: irreps of each named level state (see :meth:`level_states`)
        self.level_irreps: dict[str, o3.Irreps] = {}
        for s in range(num_levels):
            self.level_irreps[f"edge_{s + 1}"] = edge_levels[s].irreps_out
            self.level_irreps[f"atom_{s + 1}"] = hidden
        if self.hierarchy:
            self._build_tiers(hidden, lmax, num_radial, radial_hidden, cg)
        self.dipole_readout = DipoleReadout(hidden) if dipole else None
        self.energy_head = PerSpeciesEnergy(species_z, scale, shift, atomic_energies)
        self.register_buffer("masses", mass_table()[species_z], persistent=False)

    def _build_tiers(
        self, hidden: o3.Irreps, lmax: int, num_radial: int, radial_hidden: Sequence[int], cg: dict[str, Any]
    ) -> None:
        """The fragment, fragment-graph, molecule and top-down levels (``hierarchy=True``)."""
        num_levels, layers = self.config["num_levels"], self.config["fragment_layers"]
        self.fragment_cutoff = self.config["fragment_cutoff"]
        tier = {"lmax": lmax, "num_basis": num_radial, "radial_hidden": radial_hidden}
        self.level_mix = o3.Linear(hidden * num_levels, hidden)  # every atom level feeds the fragments
        # with fragment-graph levels next (each squares its input), the fragment level needs no square
        self.fragment_level = ParentLevel(hidden, hidden, length=FRAGMENT_LENGTH, square=layers == 0, **tier, **cg)
        self.fragment_edge_embedding = EdgeEmbedding(lmax, self.fragment_cutoff, num_radial)
        self.fragment_graph_levels = torch.nn.ModuleList(
            AtomLevel(
                hidden,
                hidden,
                self.fragment_edge_embedding.irreps_sh,
                num_radial,
                radial_hidden=radial_hidden,
                avg_num_neighbors=FRAGMENT_NEIGHBORS,
                **cg,
            )
            for _ in range(layers)
        )
        self.molecule_level = ParentLevel(hidden, hidden, length=MOLECULE_LENGTH, **tier, **cg)
        self.atom_down = TopDownLevel(hidden, hidden, hidden, lengths=(FRAGMENT_LENGTH, MOLECULE_LENGTH), **tier)
        names = ["fragment", *(f"fragment_graph_{k + 1}" for k in range(layers)), "molecule"]
        self.level_irreps.update({name: hidden for name in [*names, "atom_down"]})

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom energies ``[N]`` (and the fragment labels) from the graph and ``edge_vec [E, 3]``."""
        species = self.species_index(inputs.z)  # [N]
        states, hierarchy = self.level_states(inputs, edge_vec)
        atom_states = [states[f"atom_{s + 1}"] for s in range(len(self.atom_levels))]
        out: dict[str, torch.Tensor] = {}
        if hierarchy is not None:
            atom_states.append(states["atom_down"])
            out[FRAGMENT_INDEX] = hierarchy.labels
        per_atom = sum(readout(state) for readout, state in zip(self.atom_readouts, atom_states))  # [N]
        if self.dipole_readout is not None:
            out["dipole"] = self.dipole_readout(atom_states[-1], inputs.pos, inputs.batch, inputs.num_graphs)
        out["node_energy"] = self.energy_head(per_atom, species)  # [N] float64
        return out

    def level_states(
        self, inputs: GraphInputs, edge_vec: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], Hierarchy | None]:
        """The state of every level, named as in :attr:`level_irreps`, and the hierarchy (or ``None``).

        Returns:
            ``edge_s [E, (lmax + 1) * edge_channels]`` and ``atom_s [N, hidden.dim]`` for
            ``s = 1..num_levels``; with the hierarchy also ``fragment``, ``fragment_graph_k``
            (``k = 1..fragment_layers``) ``[F, hidden.dim]``, ``molecule [M, hidden.dim]`` and
            ``atom_down [N, hidden.dim]``.
        """
        species = self.species_index(inputs.z)  # [N]
        one_hot = torch.nn.functional.one_hot(species, self.species_index.num_species).to(edge_vec.dtype)
        edge_sh, edge_radial = self.edge_embedding(edge_vec)  # [E, sh], [E, num_radial]
        cutoff = self.edge_embedding.radial.cutoff(safe_norm(edge_vec))  # [E]
        node, edge = self.embedding(one_hot), None  # [N, C x 0e]
        states: dict[str, torch.Tensor] = {}
        for s, (edge_level, atom_level) in enumerate(zip(self.edge_levels, self.atom_levels)):
            edge = edge_level(node, inputs.edge_index, edge_radial, cutoff, edge)  # [E, edge scalars]
            node = atom_level(node, inputs.edge_index, edge_sh, edge, one_hot)  # [N, hidden]
            states[f"edge_{s + 1}"], states[f"atom_{s + 1}"] = edge, node
        if not self.hierarchy:
            return states, None
        hierarchy = self.hierarchy_of(inputs, edge_vec, species)
        atom_states = [states[f"atom_{s + 1}"] for s in range(len(self.atom_levels))]
        states.update(self._tier_states(inputs, hierarchy, atom_states))
        return states, hierarchy

    def _tier_states(
        self, inputs: GraphInputs, hierarchy: Hierarchy, atom_states: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Bottom-up (atoms -> fragments -> fragment graph -> molecules), top-down (-> atoms); see level_states."""
        atom_fragment, fragment_pos = hierarchy.atom_fragment, hierarchy.fragment_pos
        fragment_molecule, molecule_pos = hierarchy.fragment_molecule, hierarchy.molecule_pos
        states: dict[str, torch.Tensor] = {}
        every_level = self.level_mix(torch.cat(atom_states, dim=-1))  # [N, hidden]
        to_fragment = inputs.pos - fragment_pos[atom_fragment]  # [N, 3] atom minus fragment centre
        fragment = self.fragment_level(every_level, to_fragment, atom_fragment, hierarchy.atoms_per_fragment)
        states["fragment"] = fragment  # [F, hidden]
        if len(self.fragment_graph_levels):
            pairs = fragment_graph(fragment_pos, hierarchy.fragment_batch, self.fragment_cutoff)  # [2, E_f]
            pair_sh, pair_radial = self.fragment_edge_embedding(edge_vectors(fragment_pos, pairs))
        for k, level in enumerate(self.fragment_graph_levels):
            fragment = level(fragment, pairs, pair_sh, pair_radial)
            states[f"fragment_graph_{k + 1}"] = fragment
        to_molecule = fragment_pos - molecule_pos[fragment_molecule]  # [F, 3]
        molecule = self.molecule_level(fragment, to_molecule, fragment_molecule, hierarchy.fragments_per_molecule)
        states["molecule"] = molecule  # [M, hidden]
        atom_molecule = fragment_molecule[atom_fragment]
        to_parents = [-to_fragment, molecule_pos[atom_molecule] - inputs.pos]  # [N, 3] each
        parents = [fragment, molecule]
        states["atom_down"] = self.atom_down(atom_states[-1], parents, to_parents, [atom_fragment, atom_molecule])
        return states

    def hierarchy_of(self, inputs: GraphInputs, edge_vec: torch.Tensor, species: torch.Tensor) -> Hierarchy:
        """Fragments (``inputs.fragment_index``, or from the bond graph), molecules and their centres of mass.

        Args:
            inputs: the graph; edge_vec: ``[E, 3]``; species: ``[N]`` species indices.

        Raises:
            ValueError: periodic input, or a given ``fragment_index`` whose fragments span two graphs.
        """
        if bool(inputs.pbc.any()):
            raise ValueError(
                "NBodyNetwork(hierarchy=True) needs non-periodic structures (a molecule's centre of mass "
                "is undefined in a periodic cell); use hierarchy=False for periodic systems"
            )
        bonds = bonds_of(inputs.z, inputs.edge_index, edge_vec, self.bond_factor)
        labels = inputs.fragment_index
        labels = fragments_from_bonds(inputs.z, bonds) if labels is None else labels.to(inputs.z.device)
        molecules = molecules_from_bonds(inputs.z, bonds, labels)
        masses = self.masses[species].to(inputs.pos.dtype)
        return build_hierarchy(labels, molecules, inputs.batch, inputs.pos, masses)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """As ``torch.nn.Module.load_state_dict``; refuses, naming the reason, the weights of the former hierarchy.

        Weights written before the top-down pass had its gain (``atom_down.message_gain``) get the
        gain 1, which is what those models computed.
        """
        if any(key.startswith("fragment_level.filter_mlp.") for key in state_dict):
            raise ValueError(
                "these NBodyNetwork weights are of the former hierarchy (one heavy atom per fragment, no "
                "fragment graph or top-down pass), which this version no longer builds; retrain the model"
            )
        if self.hierarchy and "atom_down.message_gain" not in state_dict and "atom_down.mix.weight" in state_dict:
            state_dict = {**state_dict, "atom_down.message_gain": state_dict["atom_down.mix.weight"].new_ones(())}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _check_bond_cutoff(species: list[int], r_max: float, bond_factor: float) -> None:
    """Raise unless ``r_max`` covers the longest bond between two of the ``species`` that the fragment rule reads."""
    longest = bond_factor * 2 * max(covalent_radii[z] for z in species)
    if r_max < longest:
        raise ValueError(
            f"NBodyNetwork: r_max={r_max} is below the longest bond cutoff {longest:.2f} A of the fragment "
            f"rule (bond_factor={bond_factor}); raise r_max or use hierarchy=False"
        )
