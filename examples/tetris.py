"""Rotated Tetris: classify 3D Tetris pieces seen in random orientations, with every nonlinearity family.

The data are the eight 4-point pieces of e3nn's Tetris example on a unit grid. The network is
trained on the eight pieces in their canonical pose only and tested on randomly rotated (and
reflected) and translated copies, so it can only succeed through its built-in symmetry.

Chirality. Two pieces (``chiral_a``, ``chiral_b``) are mirror images of each other; every other
piece is congruent to its own mirror image. A reflection therefore turns ``chiral_a`` into a
rotated ``chiral_b`` and vice versa. The network is O(3)-equivariant and tells the pair apart with
a pseudoscalar (``0o``) output ``p``: the pooled scalars go through ``o3.Linear`` to ``7x0e + 1x0o``,
``s_0 .. s_6`` score the seven pieces up to reflection, and the logits of the pair are
``s_0 + p`` and ``s_0 - p``. Rotations leave every logit unchanged; a reflection flips the sign of
``p`` and so swaps the pair's logits. Hence the accuracies reported:

- *rotated*: proper rotations (and translations) of the pieces, eight classes;
- *rot+refl*: rotations and reflections, eight classes, where a reflected chiral piece is labelled
  as its mirror partner (it *is* a rotated copy of the partner), so a correct O(3)-equivariant
  network scores as on rotations;
- *rot+refl, merged*: the same copies with the chiral pair counted as one class (seven classes):
  what a network that cannot see handedness can reach.

A pseudoscalar needs features of "unnatural" parity (``1e``, ``2o``, ...) somewhere in the network:
from the all-ones ``0e`` input and spherical harmonics ``0e, 1o, 2e`` the first block makes
``0e, 1o, 2e``, the second ``1e, 2o`` (e.g. a cross product), the third ``0o``; each block keeps
the hidden irreps it can reach. The ``norm``, ``gate`` and ``tensor_product`` families act on any
irreps and get there. The ``scalar`` family only acts on scalars (the network sees distances only)
and the ``fourier`` family only on sphere signals ``C x (0e + 1o + 2e)``: all their features have
natural parity, such a network is invariant under inversion, ``p = 0``, and it cannot tell the
chiral pair apart, by construction (expected accuracy 7/8 on the eight classes, 1 when merged).

Graph: fully connected within each piece (largest distance 3 < ``r_max = 4``)::

    python examples/tetris.py                          # every family in turn
    python examples/tetris.py --nonlinearity gate norm
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from e3nn import o3
from tqdm import tqdm

from molequi.nn import InteractionBlock
from molequi.testing import random_o3

CLASSES: tuple[str, ...] = ("chiral_a", "chiral_b", "square", "line", "corner", "L", "T", "zigzag")
#: Class of the mirror image of each piece.
MIRROR: tuple[int, ...] = (1, 0, 2, 3, 4, 5, 6, 7)
#: ``[8, 4, 3]`` the pieces in canonical pose (e3nn's Tetris example); ``chiral_b`` is ``chiral_a`` with ``y -> -y``.
SHAPES = torch.tensor(
    [
        [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 1, 0)],
        [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, -1, 0)],
        [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)],
        [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)],
        [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)],
        [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0)],
        [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 1)],
        [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)],
    ],
    dtype=torch.float64,
)
POINTS_PER_SHAPE = 4
R_MAX = 4.0
#: Hidden irreps of the families that accept any irreps.
HIDDEN_ANY = "8x0e+4x0o+4x1o+4x1e+2x2e+2x2o"


def silu_quadratic(x: torch.Tensor) -> torch.Tensor:
    """``x / 2 + x^2 / 4``: the degree-2 Taylor polynomial of SiLU at 0 (exact in the Fourier family)."""
    return 0.5 * x + 0.25 * x * x


@dataclass(frozen=True)
class Variant:
    """A nonlinearity family with its options and the hidden irreps it can act on."""

    family: str
    options: dict[str, Any]
    hidden: str


VARIANTS: dict[str, Variant] = {
    "scalar": Variant("scalar", {}, "16x0e"),
    "norm": Variant("norm", {}, HIDDEN_ANY),
    "gate": Variant("gate", {}, HIDDEN_ANY),
    "tensor_product": Variant("tensor_product", {}, HIDDEN_ANY),
    "fourier_poly": Variant("fourier", {"act": silu_quadratic, "degree": 2}, "8x0e+8x1o+8x2e"),
    "fourier_silu": Variant("fourier", {"act": "silu"}, "8x0e+8x1o+8x2e"),
}


@dataclass(frozen=True)
class TetrisResult:
    """Training and test summary of one variant."""

    nonlinearity: str
    num_parameters: int
    steps: int
    final_loss: float
    train_seconds: float
    accuracy_rotated: float
    accuracy_reflected: float
    accuracy_merged: float


def reachable(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, wanted: o3.Irreps) -> o3.Irreps:
    """The entries of ``wanted`` that a convolution ``irreps_in (x) irreps_sh`` can produce."""
    products = {ir for _, a in irreps_in for _, b in irreps_sh for ir in a * b}
    return o3.Irreps([(mul, ir) for mul, ir in wanted if ir in products])


class TetrisNet(torch.nn.Module):
    """All-ones scalars -> interaction blocks -> sum-pooled scalars -> ``7x0e + 1x0o`` -> 8 logits.

    Args:
        variant: nonlinearity family, options and hidden irreps (each block keeps the reachable part).
        num_blocks: number of interaction blocks (3 are needed to reach ``0o``).

    Shapes:
        ``pos [N, 3]``, ``edge_index [2, E]``, ``batch [N]`` -> logits ``[num_graphs, 8]``.
    """

    def __init__(self, variant: Variant, num_blocks: int = 3) -> None:
        super().__init__()
        irreps_sh = o3.Irreps.spherical_harmonics(2)
        irreps = o3.Irreps("1x0e")
        blocks = []
        for _ in range(num_blocks):
            block = InteractionBlock(
                irreps,
                reachable(irreps, irreps_sh, o3.Irreps(variant.hidden)),
                nonlinearity=variant.family,
                nonlinearity_options=variant.options,
                irreps_sh=irreps_sh,
                r_max=R_MAX,
                radial_hidden=(32,),
                avg_num_neighbors=POINTS_PER_SHAPE - 1,
            )
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = torch.nn.ModuleList(blocks)
        self.scalar_slices = [sl for sl, (_, ir) in zip(irreps.slices(), irreps) if ir.l == 0]
        self.irreps_pooled = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
        self.readout = o3.Linear(self.irreps_pooled, "7x0e+1x0o")

    def forward(
        self, pos: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor, num_graphs: int
    ) -> torch.Tensor:
        """``pos [N, 3]`` -> logits ``[num_graphs, 8]`` in the order of :data:`CLASSES`."""
        x = pos.new_ones(pos.shape[0], 1)
        for block in self.blocks:
            x = block(x, pos, edge_index)
        scalars = torch.cat([x[:, sl] for sl in self.scalar_slices], dim=-1)
        pooled = scalars.new_zeros(num_graphs, scalars.shape[1]).index_add(0, batch, scalars)
        out = self.readout(pooled)
        shared, pseudo = out[:, :1], out[:, 7:]
        return torch.cat([shared + pseudo, shared - pseudo, out[:, 1:7]], dim=-1)


def fully_connected(num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``edge_index [2, E]`` linking every ordered pair of distinct points within each piece, and ``batch [N]``."""
    n = POINTS_PER_SHAPE
    source, target = torch.nonzero(~torch.eye(n, dtype=torch.bool), as_tuple=True)
    offsets = n * torch.arange(num_graphs).repeat_interleave(source.numel())
    edge_index = torch.stack([source.repeat(num_graphs), target.repeat(num_graphs)]) + offsets
    return edge_index, torch.arange(num_graphs).repeat_interleave(n)


@dataclass(frozen=True)
class EvalSet:
    """Transformed copies of the pieces: ``pos [num * 4, 3]`` and their labels ``[num]``."""

    pos: torch.Tensor
    labels: torch.Tensor


def make_test_sets(num: int, seed: int) -> tuple[EvalSet, EvalSet]:
    """``num`` randomly rotated copies and the same copies with every other one also reflected.

    Each class appears ``num / 8`` times (rounded) in random order, independent of which copies
    are reflected; every copy is also translated by ``N(0, 5^2)``. In the reflected set a reflected
    chiral piece is labelled as its mirror partner.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num) % len(CLASSES))[torch.randperm(num, generator=generator)]
    matrices = random_o3(num, generator=generator)  # every odd-numbered one is a reflection
    determinants = torch.linalg.det(matrices)
    rotations = matrices * determinants[:, None, None]
    shift = 5.0 * torch.randn(num, 1, 3, dtype=torch.float64, generator=generator)
    dtype = torch.get_default_dtype()

    def transformed(transforms: torch.Tensor) -> torch.Tensor:
        return (SHAPES[labels] @ transforms.transpose(1, 2) + shift).reshape(-1, 3).to(dtype)

    mirrored = torch.tensor(MIRROR)[labels]
    return (
        EvalSet(transformed(rotations), labels),
        EvalSet(transformed(matrices), torch.where(determinants < 0, mirrored, labels)),
    )


def predict(model: TetrisNet, pos: torch.Tensor) -> torch.Tensor:
    """Predicted class ``[num]`` of each piece in ``pos [num * 4, 3]``."""
    num = pos.shape[0] // POINTS_PER_SHAPE
    edge_index, batch = fully_connected(num)
    with torch.no_grad():
        return model(pos, edge_index, batch, num).argmax(dim=-1)


def train(
    model: TetrisNet, max_steps: int, target_loss: float, lr: float, label: str, progress: bool
) -> tuple[int, float]:
    """Adam on the eight canonical pieces until the loss is below ``target_loss``; returns (steps, loss)."""
    pos = SHAPES.reshape(-1, 3).to(torch.get_default_dtype())
    labels = torch.arange(len(CLASSES))
    edge_index, batch = fully_connected(len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    bar = tqdm(range(1, max_steps + 1), desc=label, leave=False, disable=not progress)
    for step in bar:
        loss = torch.nn.functional.cross_entropy(model(pos, edge_index, batch, len(CLASSES)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)
        if loss.item() < target_loss:
            break
    bar.close()
    return step, loss.item()


def run_variant(name: str, args: argparse.Namespace, test_sets: tuple[EvalSet, EvalSet]) -> TetrisResult:
    """Build, train and test the network with the nonlinearity variant ``name``."""
    torch.manual_seed(args.seed)
    model = TetrisNet(VARIANTS[name], num_blocks=args.blocks)
    start = time.perf_counter()
    steps, loss = train(model, args.max_steps, args.target_loss, args.lr, name, not args.no_progress)
    seconds = time.perf_counter() - start
    rotated, reflected = test_sets
    merge = torch.tensor([min(k, MIRROR[k]) for k in range(len(CLASSES))])
    predicted_rotated = predict(model, rotated.pos)
    predicted_reflected = predict(model, reflected.pos)
    return TetrisResult(
        nonlinearity=name,
        num_parameters=sum(p.numel() for p in model.parameters()),
        steps=steps,
        final_loss=loss,
        train_seconds=seconds,
        accuracy_rotated=(predicted_rotated == rotated.labels).double().mean().item(),
        accuracy_reflected=(predicted_reflected == reflected.labels).double().mean().item(),
        accuracy_merged=(merge[predicted_reflected] == merge[reflected.labels]).double().mean().item(),
    )


def markdown_table(results: list[TetrisResult], num_test: int) -> str:
    """The results as a markdown table."""
    lines = [
        "| nonlinearity | parameters | train steps | final loss | train time (s) | acc rotated | "
        "acc rot+refl | acc rot+refl, chiral merged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.nonlinearity} | {r.num_parameters} | {r.steps} | {r.final_loss:.2e} | {r.train_seconds:.1f} | "
            f"{r.accuracy_rotated:.3f} | {r.accuracy_reflected:.3f} | {r.accuracy_merged:.3f} |"
        )
    lines.append(
        f"\n{num_test} test copies each; rot+refl: a reflected chiral piece is labelled as its mirror partner; "
        "chiral merged: the mirror pair counts as one class."
    )
    return "\n".join(lines)


@contextlib.contextmanager
def torch_threads(num: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--nonlinearity", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
        help="variants to train, in turn (default: all)",
    )
    parser.add_argument("--max-steps", type=int, default=300, help="most Adam steps per variant (default 300)")
    parser.add_argument("--target-loss", type=float, default=1e-2, help="stop once the loss is below (default 1e-2)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--blocks", type=int, default=3, help="interaction blocks (default 3)")
    parser.add_argument("--num-test", type=int, default=200, help="test copies per test set (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and test copies (default 0)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch threads (default 1: the graphs are tiny, more threads only add synchronisation)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[TetrisResult]:
    """Train and test every requested variant, print the markdown table, return the results."""
    args = parse_args(argv)
    test_sets = make_test_sets(args.num_test, args.seed)
    with torch_threads(args.threads):
        results = [run_variant(name, args, test_sets) for name in args.nonlinearity]
    print(markdown_table(results, args.num_test))
    return results


if __name__ == "__main__":
    main()
