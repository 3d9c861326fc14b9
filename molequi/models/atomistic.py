"""Base class of energy models: per-atom energies -> total energy, forces and stress by autograd."""

from __future__ import annotations

import abc
from typing import Any

import torch

from ..nn.edge_embedding import edge_vectors
from ..nn.init import reset_children
from .inputs import GraphInputs, read_graph_inputs


class AtomisticModel(torch.nn.Module, abc.ABC):
    """An energy model ``E = sum_i E_i`` with ``F = -dE/dpos`` and stress ``(1/V) dE/d(strain)``.

    Subclasses implement :meth:`node_energies` and keep their constructor arguments in
    ``self.config`` (a JSON-able dict) so a checkpoint can rebuild them; they set ``self.r_max``
    and ``self.species_index`` (:class:`~molequi.nn.embedding.SpeciesIndex`).

    Graphs from molequi's datasets and calculator are validated where they enter and the forward
    pass makes no host synchronisation; raw input without ``edge_index`` (whose neighbour list is
    built here anyway) has its elements checked here.
    """

    r_max: float
    config: dict[str, Any]

    def reset_parameters(self) -> None:
        """Re-initialise every weight as at construction (PyG's contract; buffers such as E0 are kept)."""
        reset_children(self)

    @abc.abstractmethod
    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-atom energies ``{"node_energy": [N]}`` plus any other per-graph or per-node outputs."""

    def forward(self, data: Any, compute_forces: bool = True, compute_stress: bool = False) -> dict[str, torch.Tensor]:
        """Energies and, by autograd, forces and stress.

        Args:
            data: a PyG ``Batch``/``Data`` or a dict with keys ``z, pos`` and optionally
                ``edge_index, edge_shift, cell, pbc, batch``.
            compute_forces: also return ``forces [N, 3]`` (eV/Å).
            compute_stress: also return ``stress [G, 3, 3]`` (eV/Å^3, ASE sign) for periodic graphs.

        Returns:
            ``energy [G]``, ``node_energy [N]``, and ``forces`` / ``stress`` when asked. During
            training the derivative graph is kept so that force and stress losses can be minimised.
        """
        inputs = read_graph_inputs(data, self.r_max, dtype=next(self.parameters()).dtype)
        if inputs.edges_built:  # raw input (no graph from a dataset or calculator): validated here
            self.species_index.check(inputs.z)
        pos, cell = inputs.pos, inputs.cell
        wrt: list[torch.Tensor] = []
        if compute_forces or compute_stress:
            pos = pos if pos.requires_grad else pos.detach().requires_grad_(True)
            wrt.append(pos)
        if compute_stress:
            volume = torch.linalg.det(cell).abs()
            torch._assert_async((volume != 0).all(), "stress needs a periodic cell with non-zero volume for every graph")  # no host sync
            strain = torch.zeros_like(cell, requires_grad=True)
            symmetric = 0.5 * (strain + strain.transpose(-1, -2))
            pos = pos + torch.einsum("ni,nij->nj", pos, symmetric[inputs.batch])
            cell = cell + cell @ symmetric
            wrt.append(strain)
        inputs.pos, inputs.cell = pos, cell
        edge_vec = edge_vectors(pos, inputs.edge_index, inputs.edge_shift, cell, inputs.batch)
        out = self.node_energies(inputs, edge_vec)
        node_energy = out["node_energy"]
        energy = node_energy.new_zeros(inputs.num_graphs).index_add(0, inputs.batch, node_energy)
        out["energy"] = energy
        if wrt:
            grads = torch.autograd.grad(
                energy.sum(), wrt, create_graph=self.training, allow_unused=True, materialize_grads=True
            )
            if compute_forces:
                out["forces"] = -grads[0]
            if compute_stress:
                out["stress"] = grads[-1] / volume[:, None, None]
        return out
