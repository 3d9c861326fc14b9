"""MACE side of ``benchmarks/model_speed.py``: time one case of an untrained ``ScaleShiftMACE``.

Run with the python of a venv that has mace-torch (never molequi's: MACE pins e3nn 0.4.4)::

    python3 -m venv /work/venv-mace && /work/venv-mace/bin/pip install torch==2.13.0 mace-torch
    /work/venv-mace/bin/python benchmarks/peers/mace_worker.py --structures aspirin32.extxyz --dtype float32

The model is MACE's standard one (``RealAgnosticResidualInteractionBlock``, SiLU gates, Bessel radial
basis); ``--config`` (JSON) overrides :data:`DEFAULTS`. Graphs come from MACE's own data pipeline
(``config_from_atoms`` -> ``AtomicData.from_config`` -> its PyG-style ``Batch``).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 loads its constants with torch.load

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness  # noqa: E402

DEFAULTS = {
    "r_max": 5.0,
    "num_bessel": 8,
    "num_polynomial_cutoff": 5,
    "max_ell": 3,
    "num_interactions": 2,
    "hidden_irreps": "64x0e+64x1o",
    "MLP_irreps": "16x0e",
    "correlation": 3,
    "radial_MLP": [64, 64, 64],
    "avg_num_neighbors": 10.0,
    "interaction": "RealAgnosticResidualInteractionBlock",
}


def main() -> None:
    args = _harness.common_arguments(__doc__).parse_args()
    _harness.setup(args)
    import ase.io
    import mace
    import numpy as np
    import torch
    from e3nn import o3
    from mace import data as mace_data
    from mace import modules
    from mace.tools import AtomicNumberTable
    from mace.tools.torch_geometric import Batch

    config = {**DEFAULTS, **json.loads(args.config)}
    frames = ase.io.read(args.structures, ":")
    elements = sorted({int(z) for atoms in frames for z in atoms.numbers})
    interaction = modules.interaction_classes[config["interaction"]]
    model = modules.ScaleShiftMACE(
        r_max=config["r_max"],
        num_bessel=config["num_bessel"],
        num_polynomial_cutoff=config["num_polynomial_cutoff"],
        max_ell=config["max_ell"],
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=config["num_interactions"],
        num_elements=len(elements),
        hidden_irreps=o3.Irreps(config["hidden_irreps"]),
        MLP_irreps=o3.Irreps(config["MLP_irreps"]),
        atomic_energies=np.zeros(len(elements)),
        avg_num_neighbors=config["avg_num_neighbors"],
        atomic_numbers=elements,
        correlation=config["correlation"],
        gate=torch.nn.functional.silu,
        radial_MLP=config["radial_MLP"],
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    model.train(args.task == "train")
    z_table = AtomicNumberTable(elements)

    def build_batch():
        graphs = [
            mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(atoms), z_table=z_table, cutoff=config["r_max"]
            )
            for atoms in frames
        ]
        return Batch.from_data_list(graphs).to_dict()

    graph_ms = _harness.median_time(build_batch)
    batch = build_batch()
    num_atoms, num_edges = int(batch["positions"].shape[0]), int(batch["edge_index"].shape[1])

    def predict(training: bool):
        out = model(dict(batch), training=training, compute_force=True)
        return out["energy"], out["forces"]

    call = _harness.timed_call(args.task, model, predict, frames, num_atoms)
    _harness.report(
        call, args, model, graph_ms, num_atoms, num_edges,
        side="mace", model="MACE (ScaleShiftMACE)", version=mace.__version__, config=config,
    )  # fmt: skip


if __name__ == "__main__":
    main()
