"""EquivariantPotential: species embedding -> interaction blocks -> per-atom scalar readout -> energy."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from e3nn import o3

from ..nn.conv import InteractionBlock
from ..nn.edge_embedding import EdgeEmbedding
from ..nn.embedding import SpeciesIndex
from ..nn.readout import DipoleReadout, ScalarReadout
from .atomistic import AtomisticModel
from .inputs import GraphInputs


class EquivariantPotential(AtomisticModel):
    """An O(3)-equivariant message-passing interatomic potential (NequIP-style).

    ``E = sum_i [scale_{z_i} * readout(h_i^L) + shift_{z_i} + E0_{z_i}]`` where ``h^L`` comes from
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

    Shapes:
        input: a PyG ``Batch`` (``z [N]``, ``pos [N, 3]``, optional ``edge_index [2, E]``,
        ``edge_shift [E, 3]``, ``cell [G, 3, 3]``, ``pbc [G, 3]``, ``batch [N]``);
        output: ``energy [G]``, ``node_energy [N]``, ``forces [N, 3]``, ``stress [G, 3, 3]``,
        ``dipole [G, 3]`` with ``dipole=True``.
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
            "atomic_energies": {int(z): float(e) for z, e in (atomic_energies or {}).items()},
            "scale": _per_species_config(scale, species_z),
            "shift": _per_species_config(shift, species_z),
            "readout_hidden": int(readout_hidden),
            "dipole": bool(dipole),
        }
        num_species = len(species_z)
        irreps_species = o3.Irreps(f"{num_species}x0e")
        self.edge_embedding = EdgeEmbedding(lmax, r_max, num_radial)
        self.embedding = o3.Linear(irreps_species, o3.Irreps(hidden_irreps)[0:1])
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
                num_radial=num_radial,
                r_max=r_max,
                radial_hidden=tuple(radial_hidden),
                avg_num_neighbors=avg_num_neighbors,
            )
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = torch.nn.ModuleList(blocks)
        self.readout = ScalarReadout(irreps, readout_hidden)
        self.dipole_readout = DipoleReadout(irreps) if dipole else None
        self.register_buffer("scale", _per_species_tensor(scale, species_z))
        self.register_buffer("shift", _per_species_tensor(shift, species_z))
        e0 = self.config["atomic_energies"]
        self.register_buffer("atomic_energies", torch.tensor([e0.get(z, 0.0) for z in species_z]))

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom energies ``[N]`` from the graph and its edge vectors ``[E, 3]``."""
        species = self.species_index(inputs.z)  # [N]
        one_hot = torch.nn.functional.one_hot(species, self.species_index.num_species).to(edge_vec.dtype)
        edge_sh, edge_radial = self.edge_embedding(edge_vec)  # [E, sh], [E, num_radial]
        features = self.embedding(one_hot)  # [N, hidden scalars]
        for block in self.blocks:
            features = block(
                features, None, inputs.edge_index, node_attr=one_hot, edge_sh=edge_sh, edge_radial=edge_radial
            )
        per_atom = self.readout(features)[:, 0]  # [N]
        node_energy = self.scale[species] * per_atom + self.shift[species] + self.atomic_energies[species]
        out = {"node_energy": node_energy}
        if self.dipole_readout is not None:
            out["dipole"] = self.dipole_readout(features, inputs.pos, inputs.batch, inputs.num_graphs)
        return out


def _per_species_config(value: float | Mapping[int, float], species: list[int]) -> float | dict[int, float]:
    if isinstance(value, Mapping):
        return {int(z): float(value[z]) for z in species}
    return float(value)


def _per_species_tensor(value: float | Mapping[int, float], species: list[int]) -> torch.Tensor:
    if isinstance(value, Mapping):
        missing = [z for z in species if z not in value]
        if missing:
            raise ValueError(f"per-species value missing for atomic numbers {missing}")
        return torch.tensor([float(value[z]) for z in species])
    return torch.full((len(species),), float(value))
