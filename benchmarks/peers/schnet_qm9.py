"""The SchNet peer: PyTorch Geometric's ``SchNet`` trained by molequi's own trainer, as ``molequi train`` trains.

:class:`SchNetPotential` wraps ``torch_geometric.nn.models.SchNet`` (its embedding, Gaussian
distance expansion, continuous-filter interactions and two-layer atom-wise head, PyG's weights and
initialisation) as a molequi :class:`~molequi.models.AtomisticModel`. Its readout is SchNet's
``readout="add"`` with ``mean``, ``std`` and ``atomref``: ``E = sum_i (std h_i + mean + E0_{z_i})``,
here molequi's float64 :class:`~molequi.models.energy_head.PerSpeciesEnergy` (``scale`` = std,
``shift`` = mean, ``atomic_energies`` = E0), filled from the training set like every molequi model.
The interaction graph is molequi's neighbour list: the edges stored in the graphs (built once, as
for the molequi models) and, when ``SchNet.forward`` is called directly, :class:`MolequiNeighbours`
(``interaction_graph=``; no torch-cluster or pyg-lib needed).

Trained this way the peer shares everything but the model and its learning rate with molequi's
runs: the config file (data, split, seed, E0 from QM9's atom references, loss = MSE of the energy
per atom, AdamW, warm-up, the cosine planned in time, EMA, gradient clipping, batch size,
``max_minutes`` with the same clock, stop rule and set-up counted) and the test pass on the same
molecules. The peak learning rate is SchNet's own (:data:`SCHNET_OPTIM`): each model gets the
better of the rates probed for it (benchmarks/qm9_budget.py), and 0.01, molequi's, spoils SchNet.

Usage (from the repository root, in the main venv; the same options as ``molequi train``, the
``model`` section replaced by SchNet's, ``--set model.<SchNet option>=...`` to change it)::

    .venv/bin/python benchmarks/peers/schnet_qm9.py examples/configs/qm9_u0.yaml --threads 1 \\
        --set max_minutes=10 --set output_dir=runs/schnet_qm9_u0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch_geometric.nn.models import SchNet

from molequi.data.neighborlist import neighbor_list
from molequi.models.atomistic import AtomisticModel
from molequi.models.energy_head import PerSpeciesEnergy, per_species_config, reference_energies_config
from molequi.models.inputs import GraphInputs
from molequi.models.registry import register_model
from molequi.nn.edge_embedding import safe_norm
from molequi.nn.embedding import SpeciesIndex

#: The model section of the peer: SchNet's published QM9 size (Schütt et al. 2018: 6 interactions,
#: 128 features and filters); 50 Gaussians, PyG's default. ``r_max`` comes from the config's model.
SCHNET_DEFAULTS = {"hidden_channels": 128, "num_filters": 128, "num_interactions": 6, "num_gaussians": 50}
#: SchNet's optimiser settings over the config's: the best peak learning rate of the probes
#: 0.001, 0.002, 0.005, 0.01 (200 training molecules, 9 epochs; test U0 MAE 0.62, 0.51, 0.56, 2.57 eV).
SCHNET_OPTIM = {"lr": 0.002}


class MolequiNeighbours(torch.nn.Module):
    """SchNet's ``interaction_graph``: molequi's radius graph, ``(pos [N, 3], batch [N]) -> (edge_index [2, E], distance [E])``.

    Args:
        r_max: cutoff (Å).
    """

    def __init__(self, r_max: float) -> None:
        super().__init__()
        self.r_max = float(r_max)

    def forward(self, pos: torch.Tensor, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        edge_index, _ = neighbor_list(pos, self.r_max, batch=batch)
        source, target = edge_index
        return edge_index, safe_norm(pos[source] - pos[target])


@register_model
class SchNetPotential(AtomisticModel):
    """PyG's SchNet with molequi's float64 energy head (see the module docstring).

    Args:
        species: elements of the training set (atomic numbers or symbols).
        r_max: cutoff of the interactions and of the neighbour list (Å).
        hidden_channels, num_filters, num_interactions, num_gaussians: SchNet's sizes.
        atomic_energies: E0 per element ``{Z: eV}`` (SchNet's ``atomref``).
        scale, shift: SchNet's ``std`` and ``mean`` of the per-atom energy.

    Shapes:
        input: a molequi graph batch; output: ``energy [G]``, ``node_energy [N]`` (and forces
        when asked, by autograd).
    """

    def __init__(
        self,
        species: Sequence[int | str],
        r_max: float = 5.0,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        atomic_energies: Mapping[int, float] | None = None,
        scale: float | Mapping[int, float] = 1.0,
        shift: float | Mapping[int, float] = 0.0,
    ) -> None:
        super().__init__()
        self.species_index = SpeciesIndex(species)
        species_z = self.species_index.species
        self.r_max = float(r_max)
        self.config = {
            "species": species_z,
            "r_max": self.r_max,
            "hidden_channels": int(hidden_channels),
            "num_filters": int(num_filters),
            "num_interactions": int(num_interactions),
            "num_gaussians": int(num_gaussians),
            "atomic_energies": reference_energies_config(atomic_energies, species_z),
            "scale": per_species_config(scale, species_z, "scale"),
            "shift": per_species_config(shift, species_z, "shift"),
        }
        self.schnet = SchNet(
            hidden_channels=hidden_channels, num_filters=num_filters, num_interactions=num_interactions,
            num_gaussians=num_gaussians, cutoff=self.r_max, interaction_graph=MolequiNeighbours(self.r_max), readout="add",
        )  # fmt: skip
        self.energy_head = PerSpeciesEnergy(species_z, scale, shift, atomic_energies)

    def node_energies(self, inputs: GraphInputs, edge_vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """SchNet's layers of ``SchNet.forward`` up to the readout, on the graph's own edges: ``{"node_energy": [N]}``."""
        schnet = self.schnet
        distance = safe_norm(edge_vec)  # [E]
        edge_attr = schnet.distance_expansion(distance)  # [E, num_gaussians]
        h = schnet.embedding(inputs.z)  # [N, hidden]
        for interaction in schnet.interactions:
            h = h + interaction(h, inputs.edge_index, distance, edge_attr)
        per_atom = schnet.lin2(schnet.act(schnet.lin1(h)))[:, 0]  # [N]
        return {"node_energy": self.energy_head(per_atom, self.species_index(inputs.z))}


def schnet_config(path: str | Path, model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The raw config of ``path`` with its model section replaced by SchNet's (its ``r_max`` kept), SchNet's learning rate.

    Args:
        path: a molequi training config (YAML).
        model: SchNet options over :data:`SCHNET_DEFAULTS`.
    """
    from molequi.training.yaml_io import read_yaml

    raw = dict(read_yaml(path))
    r_max = dict(raw.get("model") or {}).get("r_max", 5.0)
    raw["model"] = {"name": SchNetPotential.__name__, "r_max": r_max, **SCHNET_DEFAULTS, **dict(model or {})}
    raw["optim"] = {**dict(raw.get("optim") or {}), **SCHNET_OPTIM}
    return raw


def main(argv: list[str] | None = None) -> int:
    """``molequi train`` with the SchNet model section; returns its exit code."""
    from molequi.training import cli_train

    parser = argparse.ArgumentParser(description=__doc__)
    cli_train.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.config.exists():
        print(f"schnet_qm9: error: {args.config}: no such config file", file=sys.stderr)
        return 2
    args.config = schnet_config(args.config)  # load_config takes the mapping like a file
    return cli_train.run(args)


if __name__ == "__main__":
    sys.exit(main())
