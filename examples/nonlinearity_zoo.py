"""Nonlinearity zoo: O(3) equivariance error and cost of every nonlinearity family on the same input.

For each family of :mod:`molequi.nn.nonlinearities` (the Fourier family three times: with an exact
polynomial activation, with SiLU at its default grid and with SiLU on a coarse grid, where the
aliasing error shows) this builds the layer on the features
``16x0e+16x1o+16x2e`` and measures, on one batch of random features,

- the O(3) equivariance error ``max |f(D_in(g) x) - D_out(g) f(x)|`` over random rotations and
  reflections (:func:`molequi.testing.equivariance_error`), with the layer built and run in float32
  and again in float64 (same seed, same input rounded to each dtype);
- the ``exact`` flag the layer declares;
- the median wall time of one forward and backward pass in float32.

Input irreps per family (the ``irreps_in`` column of the table):

- ``scalar`` only accepts scalars, so it gets as many scalar components as the others have
  features, half even and half odd (``72x0e+72x0o``), which
  makes its time per component comparable;
- ``gate`` takes the features plus one gate scalar per ``l > 0`` channel (``irreps_out + 32x0e``);
- ``norm``, ``tensor_product`` and ``fourier`` take the features as they are.

The float64 column is limited by the reference matrices, not only by the layers: the test kit
builds ``D(g)`` one matrix at a time with e3nn, whose Wigner matrices come from ``torch.matrix_exp``
on a single matrix, a path accurate to only ~1e-11 for some small arguments in float64
(pytorch/pytorch#196592). Layers that depend on ``D`` being an exact representation
(``tensor_product``, ``fourier``) then show errors of 1e-11 to 1e-10 in float64 (about 2e-14 with
matrices computed in one batched call); ``scalar`` and ``gate`` commute with any linear ``D``,
``norm`` with any orthogonal one, and are barely affected.

Timings depend on the load of the machine, so the number of torch threads and the 1-minute load
average (before and after the measurements) are printed with the table::

    python examples/nonlinearity_zoo.py --threads 2 --batch 4096
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from e3nn import o3

from molequi.dtypes import default_dtype
from molequi.nn import nonlinearities
from molequi.testing import equivariance_error

#: The features every family (but ``scalar``, see the module docstring) acts on.
IRREPS = o3.Irreps("16x0e+16x1o+16x2e")


def silu_quadratic(x: torch.Tensor) -> torch.Tensor:
    """``x / 2 + x^2 / 4``: the degree-2 Taylor polynomial of SiLU at 0 (exact in the Fourier family)."""
    return 0.5 * x + 0.25 * x * x


@dataclass(frozen=True)
class Variant:
    """One row of the zoo: a family with its options."""

    label: str
    family: str
    options: dict[str, Any]


VARIANTS: tuple[Variant, ...] = (
    Variant("scalar", "scalar", {}),
    Variant("norm", "norm", {}),
    Variant("gate", "gate", {}),
    Variant("tensor_product", "tensor_product", {}),
    Variant("fourier (x/2+x^2/4, degree 2)", "fourier", {"act": silu_quadratic, "degree": 2}),
    Variant("fourier (silu, default grid)", "fourier", {"act": "silu"}),
    Variant("fourier (silu, resolution 12)", "fourier", {"act": "silu", "resolution": 12}),
)


@dataclass(frozen=True)
class ZooRow:
    """Measurements of one variant."""

    label: str
    irreps_in: str
    exact: bool
    error_float32: float
    error_float64: float
    time_ms: float


@contextlib.contextmanager
def torch_threads(num: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(previous if num is None else num)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def output_irreps(variant: Variant) -> o3.Irreps:
    """The ``irreps_out`` a variant is built with: :data:`IRREPS`, or same-size scalars for ``scalar``."""
    if variant.family == "scalar":
        half = IRREPS.dim // 2
        return o3.Irreps(f"{half}x0e+{IRREPS.dim - half}x0o")
    return IRREPS


def build_layer(variant: Variant, dtype: torch.dtype, seed: int) -> nonlinearities.EquivariantNonlinearity:
    """The variant's layer with its parameters and buffers created in ``dtype`` from ``seed``."""
    with default_dtype(dtype):
        torch.manual_seed(seed)
        return nonlinearities.build(variant.family, output_irreps(variant), **variant.options)


def forward_backward_ms(layer: torch.nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Median wall time (ms) of ``layer(inputs)`` plus its backward pass to inputs and parameters."""
    inputs = inputs.detach().requires_grad_(True)
    cotangent = torch.randn_like(layer(inputs))
    times = []
    for _ in range(repeats + 1):  # the first pass is a warm-up
        inputs.grad = None
        layer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        layer(inputs).backward(cotangent)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times[1:])


def measure(variant: Variant, batch: int, repeats: int, seed: int) -> ZooRow:
    """Equivariance errors in float32 and float64 and the float32 forward+backward time of ``variant``."""
    layers = {dtype: build_layer(variant, dtype, seed) for dtype in (torch.float32, torch.float64)}
    irreps_in, irreps_out = layers[torch.float64].irreps_in, layers[torch.float64].irreps_out
    # unit Gaussian features (e3nn's "component" normalization), drawn once and rounded to each dtype
    inputs = torch.randn(batch, irreps_in.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    errors = {}
    for dtype, layer in layers.items():
        # e3nn computes D_from_matrix in the default dtype, whatever the dtype of the matrix
        with default_dtype(dtype):
            errors[dtype] = equivariance_error(
                layer, irreps_in, irreps_out, inputs=inputs.to(dtype), generator=torch.Generator().manual_seed(seed)
            )
    return ZooRow(
        label=variant.label,
        irreps_in=str(irreps_in),
        exact=layers[torch.float64].exact,
        error_float32=errors[torch.float32],
        error_float64=errors[torch.float64],
        time_ms=forward_backward_ms(layers[torch.float32], inputs.to(torch.float32), repeats),
    )


def markdown_table(rows: list[ZooRow], repeats: int) -> str:
    """The rows as a markdown table."""
    lines = [
        "| nonlinearity | irreps_in | exact | O(3) error float32 | O(3) error float64 | "
        f"fwd+bwd float32 (ms, median of {repeats}) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.irreps_in} | {row.exact} | {row.error_float32:.1e} | "
            f"{row.error_float64:.1e} | {row.time_ms:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="number of feature vectors (default 4096)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward+backward passes (default 10)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of parameters, inputs and rotations (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ZooRow]:
    """Measure every variant, print the markdown table with the thread count and load, return the rows."""
    args = parse_args(argv)
    with torch_threads(args.threads):
        load_before = os.getloadavg()[0]
        rows = [measure(variant, args.batch, args.repeats, args.seed) for variant in VARIANTS]
        load_after = os.getloadavg()[0]
        threads = torch.get_num_threads()
    print(
        f"batch {args.batch}, torch threads {threads}, "
        f"1-min load average {load_before:.2f} before / {load_after:.2f} after"
    )
    print(markdown_table(rows, args.repeats))
    return rows


if __name__ == "__main__":
    main()
