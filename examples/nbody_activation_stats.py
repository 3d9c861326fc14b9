"""RMS of every level's state of an NBodyNetwork at initialisation, per level and per irrep, on real molecules.

Usage (from the repository root)::

    python examples/nbody_activation_stats.py                      # aspirin (rMD17), 6 levels
    python examples/nbody_activation_stats.py --no-norm            # the same without the soft normalisation
    python examples/nbody_activation_stats.py --data ../shared/data/rmd17/ethanol_1000a_metatrain.xyz

The RMS of a block ``mul x ir`` is taken over its channels, components and all atoms (fragments,
molecules) of the frames, for every atom level and the fragment, fragment-graph, molecule and
top-down (``atom_down``) levels; edge levels report the RMS of their scalars over edges within ``r_max``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import torch
from e3nn import o3
from torch_geometric.data import Batch

from molequi.data import atoms_to_graph
from molequi.models.inputs import read_graph_inputs
from molequi.models.nbody import NBodyNetwork
from molequi.nn.edge_embedding import edge_vectors

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17" / "aspirin_train_1200_macejax.xyz"


def block_rms(state: torch.Tensor, irreps: o3.Irreps) -> dict[str, float]:
    """RMS of each irrep type of ``state [M, irreps.dim]`` over rows, channels and components."""
    rms = {}
    for (_, ir), sl in zip(irreps, irreps.slices()):
        rms[str(ir)] = state[:, sl].pow(2).mean().sqrt().item()
    return rms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="any ASE-readable file of molecules")
    parser.add_argument("--frames", type=int, default=8, help="frames read from the start of the file")
    parser.add_argument("--levels", type=int, default=6, help="number of edge + atom levels")
    parser.add_argument("--hidden", default="32x0e+32x1o+32x2e", help="hidden irreps")
    parser.add_argument("--nonlinearity", default="tensor_product", help="family of the CG square")
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--no-norm", action="store_true", help="replace the soft normalisation by the identity")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    torch.manual_seed(args.seed)
    frames = ase.io.read(args.data, f":{args.frames}")
    graphs = [atoms_to_graph(atoms, r_max=args.r_max, dtype=torch.float64) for atoms in frames]
    batch = Batch.from_data_list(graphs)
    species = sorted({int(z) for z in batch.z})
    avg_num_neighbors = batch.edge_index.shape[1] / batch.num_nodes
    model = NBodyNetwork(
        species,
        r_max=args.r_max,
        num_levels=args.levels,
        hidden_irreps=args.hidden,
        nonlinearity=args.nonlinearity,
        avg_num_neighbors=avg_num_neighbors,
    )
    if args.no_norm:
        tiers = [model.fragment_level, *model.fragment_graph_levels, model.molecule_level, model.atom_down]
        for level in [*model.edge_levels, *model.atom_levels, *tiers]:
            level.norm = torch.nn.Identity()

    inputs = read_graph_inputs(batch, model.r_max)
    edge_vec = edge_vectors(inputs.pos, inputs.edge_index)
    with torch.no_grad():
        states, hierarchy = model.level_states(inputs, edge_vec)
    hidden = o3.Irreps(args.hidden)
    columns = [str(ir) for _, ir in hidden]
    print(
        f"{args.data.name}: {len(frames)} frames, {batch.num_nodes} atoms, {hierarchy.num_fragments} fragments, "
        f"{hierarchy.num_molecules} molecules, "
        f"{avg_num_neighbors:.1f} neighbours per atom; hidden {hidden}, {args.levels} levels, "
        f"{args.nonlinearity}, soft norm {'off' if args.no_norm else 'on'}"
    )
    print(f"{'level':<16} {'rows':>6} " + " ".join(f"{c:>10}" for c in columns) + f" {'edge 0e':>10}")
    for name, state in states.items():
        if name.startswith("edge"):
            continue
        rms = block_rms(state, model.level_irreps[name])
        edge_name = name.replace("atom_", "edge_")  # atom_s has edge_s; the tiers have no edge level
        has_edge = edge_name != name and edge_name in states
        edge = f"{states[edge_name].pow(2).mean().sqrt().item():10.3g}" if has_edge else f"{'':>10}"
        print(f"{name:<16} {state.shape[0]:>6} " + " ".join(f"{rms.get(c, 0.0):10.3g}" for c in columns) + f" {edge}")


if __name__ == "__main__":
    main()
