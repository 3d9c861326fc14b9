"""EquivariantPotential: species embedding -> interaction blocks -> per-atom scalar readout -> energy."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from e3nn import o3

from ..nn.conv import InteractionBlock
from ..nn.edge_embedding import EdgeEmbedding, safe_norm
from ..nn.embedding import SpeciesIndex
from ..nn.readout import DipoleReadout, ScalarReadout
from .atomistic import AtomisticModel
from .energy_head import PerSpeciesEnergy, per_species_config, reference_energies_config
from .inputs import GraphInputs
from .registry import register_model


@register_model
class EquivariantPotential(AtomisticModel):
    """An O(3)-equivariant message-passing interatomic potential (NequIP-style).

    ``E = sum_i [scale_{z_i} * readout(h_i^L) + shift_{z_i} + E0_{z_i}]`` (the last three terms and the
    sum in float64, :class:`~molequi.models.energy_head.PerSpeciesEnergy`) where ``h^L`` comes from
    ``num_layers`` :class:`~molequi.nn.InteractionBlock` s (convolution, any nonlinearity family,
    species-dependent self-connection) on a one-hot species embedding.

    Args:
        species: elements the model knows (atomic numbers or symbols).
        r_max: cutoff radius (Å).
        num_layers: interaction blocks (default 3).
        hidden_irreps: node features between blocks (default ``"32x0e+32x1o+32x2e"``).
        lmax: maximum degree of the edge spherical harmonics (default 2).
        nonlinearity: family name (default ``"gate"``); ``nonlinearity_options`` its options.
        num_radial: Bessel functions (default 8); ``radial_hidden``: radial MLP widths.
        avg_num_neighbors: aggregation normaliser (set it from the data statistics).
        atomic_energies: reference energy per element ``{Z: eV}`` (``E0``; default 0).
        scale, shift: per-atom energy scale and shift, one number or ``{Z: value}`` (from statistics).
        readout_hidden: width of the per-atom readout MLP.
        dipole: also predict the molecular dipole ``dipole [G, 3]`` (e Å) from per-atom charges
            and vectors (QM9's ``mu`` is its norm); needs ``1o`` in ``hidden_irreps``.
        radial_species: condition the radial weights of every convolution on the species of both
            endpoints (an implicit kernel in the sense of Zhdanov, Hoffmann & Cesa 2023: the MLP
            reads ``[B(r) u(r), u(r) onehot(z_j), u(r) onehot(z_i)]``, so it still vanishes
            smoothly at ``r_max`` through the envelope ``u``).
        intensive: also predict a per-molecule invariant ``intensive [G] = intensive_shift +
            intensive_scale * mean_i r(h_i)`` from a second scalar readout ``r``, mean-pooled (so
            size-intensive, and without E0) for targets such as QM9's HOMO-LUMO gap;
            ``intensive_shift`` / ``intensive_scale``: the mean and standard deviation of the
            target over the training set.

    Shapes:
        input: a PyG ``Batch`` (``z [N]``, ``pos [N, 3]``, optional ``edge_index [2, E]``,
        ``edge_shift [E, 3]``, ``cell [G, 3, 3]``, ``pbc [G, 3]``, ``batch [N]``);
        output: ``energy [G]``, ``node_energy [N]``, ``forces [N, 3]``, ``stress [G, 3, 3]``,
        ``dipole [G, 3]`` with ``dipole=True``, ``intensive [G]`` with ``intensive=True``.
    """

    def __init__(
        self,
        species: Sequence[int | str],
        r_max: float = 5.0,
        num_layers: int = 3,
        hidden_irreps: str = "32x0e+32x1o+32x2e",
        lmax: int = 2,
        nonlinearity: str = "gate",
        nonlinearity_options: Mapping[str, Any] | None = None,
        num_radial: int = 8,
        radial_hidden: Sequence[int] = (64, 64),
        avg_num_neighbors: float = 10.0,
        atomic_energies: Mapping[int, float] | None = None,
        scale: float | Mapping[int, float] = 1.0,
        shift: float | Mapping[int, float] = 0.0,
        readout_hidden: int = 16,
        dipole: bool = False,
        radial_species: bool = False,
        intensive: bool = False,
        intensive_shift: float = 0.0,
        intensive_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.species_index = SpeciesIndex(species)
        species_z = self.species_index.species
        self.r_max = float(r_max)
        self.config = {
            "species": species_z,
            "r_max": self.r_max,
            "num_layers": int(num_layers),
            "hidden_irreps": str(o3.Irreps(hidden_irreps)),
            "lmax": int(lmax),
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
            "radial_species": bool(radial_species),
            "intensive": bool(intensive),
            "intensive_shift": float(intensive_shift),
            "intensive_scale": float(intensive_scale),
        }
        num_species = len(species_z)
        irreps_species = o3.Irreps(f"{num_species}x0e")
        self.edge_embedding = EdgeEmbedding(lmax, r_max, num_radial)
        self.embedding = o3.Linear(irreps_species, scalar_part(hidden_irreps))
        irreps = self.embedding.irreps_out
        blocks = []
        for _ in range(num_layers):
            block = InteractionBlock(
                irreps,
                hidden_irreps,
                nonlinearity=nonlinearity,
                nonlinearity_options=dict(nonlinearity_options or {}),
                irreps_node_attr=irreps_species,
                irreps_sh=self.edge_embedding.irreps_sh,
                num_radial=num_radial + (2 * num_species if radial_species else 0),
                r_max=r_max,
                radial_hidden=tuple(radial_hidden),
                avg_num_neighbors=avg_num_neighbors,
            )
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = torch.nn.ModuleList(blocks)
        self.readout = ScalarReadout(irreps, readout_hidden)
        self.dipole_readout = DipoleReadout(irreps) if dipole else None
        self.intensive_readout = ScalarReadout(irreps, readout_hidden) if intensive else None
        self.energy_head = PerSpeciesEnergy(species_z, scale, shift, atomic_energies)

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom energies ``[N]`` from the graph and its edge vectors ``[E, 3]``."""
        species = self.species_index(inputs.z)  # [N]
        one_hot = self.species_index.one_hot(inputs.z).to(edge_vec.dtype)  # [N, S], a lookup (no host sync)
        edge_sh, edge_radial = self.edge_embedding(edge_vec)  # [E, sh], [E, num_radial]
        if self.config["radial_species"]:
            source, target = inputs.edge_index
            envelope = self.edge_embedding.radial.cutoff(safe_norm(edge_vec))[:, None]  # [E, 1]
            pair = torch.cat([one_hot[source], one_hot[target]], dim=1) * envelope  # [E, 2 S]
            edge_radial = torch.cat([edge_radial, pair], dim=1)  # [E, num_radial + 2 S]
        features = self.embedding(one_hot)  # [N, hidden scalars]
        for block in self.blocks:
            features = block(
                features, None, inputs.edge_index, node_attr=one_hot, edge_sh=edge_sh, edge_radial=edge_radial
            )
        per_atom = self.readout(features)[:, 0]  # [N]
        out = {"node_energy": self.energy_head(per_atom, species)}  # [N] float64
        if self.dipole_readout is not None:
            out["dipole"] = self.dipole_readout(features, inputs.pos, inputs.batch, inputs.num_graphs)
        if self.intensive_readout is not None:
            per_atom = self.intensive_readout(features)[:, 0]  # [N]
            count = per_atom.new_zeros(inputs.num_graphs).index_add(0, inputs.batch, torch.ones_like(per_atom))
            mean = per_atom.new_zeros(inputs.num_graphs).index_add(0, inputs.batch, per_atom) / count  # [G]
            out["intensive"] = self.config["intensive_shift"] + self.config["intensive_scale"] * mean
        return out



def scalar_part(irreps: str | o3.Irreps) -> o3.Irreps:
    """The even scalars of ``irreps`` as one block (``"32x0e+8x1o"`` -> ``32x0e``): the species embedding's output.

    Raises:
        ValueError: ``irreps`` has no ``0e`` (the embedding would have no paths: a constant network).
    """
    irreps = o3.Irreps(irreps)
    mul = sum(m for m, ir in irreps if ir == o3.Irrep("0e"))
    if mul == 0:
        raise ValueError(f"hidden_irreps {irreps} has no even scalars (0e); the species embedding needs them")
    return o3.Irreps(f"{mul}x0e")
