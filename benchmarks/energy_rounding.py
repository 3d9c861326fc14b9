#!/usr/bin/env python
"""Energy rounding of a float32 model: its energies against the same weights in float64 on the same frames.

Usage: python benchmarks/energy_rounding.py runs/x/model.pt frames.extxyz (first 200 frames).
The difference is the network's own float32 rounding: E0, shifts and the per-graph sums are float64
(molequi.models.energy_head). Measured on a molecule.yaml model trained 5 CPU-minutes on rMD17
aspirin (benchmarks/accuracy_budget.py): max 0.0042 meV, mean 0.0011 meV over 200 test frames.
"""
import sys, torch, ase.io, copy
torch.set_num_threads(1)
from torch_geometric.data import Batch
from molequi.data import atoms_to_graph
from molequi.models import load_model
model32 = load_model(sys.argv[1])
model64 = copy.deepcopy(model32).double()
frames = ase.io.read(sys.argv[2], ":200")
diffs = []
for i in range(0, len(frames), 20):
    chunk = frames[i:i + 20]
    b32 = Batch.from_data_list([atoms_to_graph(a, model32.r_max, dtype=torch.float32) for a in chunk])
    b64 = Batch.from_data_list([atoms_to_graph(a, model32.r_max, dtype=torch.float64) for a in chunk])
    e32 = model32(b32, compute_forces=False)["energy"].detach()
    e64 = model64(b64, compute_forces=False)["energy"].detach()
    diffs.append((e32 - e64).abs())
d = torch.cat(diffs)
print(f"model dtype {next(model32.parameters()).dtype}; |E(float32) - E(float64)| over {d.numel()} aspirin frames: max {1000*d.max():.4f} meV, mean {1000*d.mean():.4f} meV; energies ~{float(e64[0]):.3f} eV")
