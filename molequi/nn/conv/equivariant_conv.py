"""Equivariant point convolution as a PyTorch Geometric ``MessagePassing`` layer.

The per-edge tensor product runs on one of three backends (``conv.backend``), all giving the same
numbers up to floating-point rounding (``tests/nn/test_conv_backends.py``):

- ``"reference"``: PyG ``propagate`` with e3nn's ``TensorProduct``, the definition;
- ``"torch"``: fused PyTorch operations, channels last, grouped by input irrep block and output
  dimension (:class:`~molequi.nn.conv.plan.BlockLayout`); any device, differentiable to any order;
- ``"cpp"`` (default): a fused C++ kernel (gather, Clebsch-Gordan contraction, radial weights and
  scatter-sum in one pass over chunks of edges, :mod:`molequi.nn.conv.autograd`) with hand-written
  first and second derivatives (forces, and force losses in training; no third derivatives), in
  training and eval mode, compiled once per machine on first use (:mod:`molequi.nn.conv.kernel`).
  It serves CPU tensors; on other devices, without a C++ compiler, with ``MOLEQUI_FUSED_KERNEL=0``
  in the environment, or with a block of more channels than the kernel's limit (512), the
  ``"torch"`` backend runs instead.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch_geometric.nn import MessagePassing

from ..edge_embedding import edge_vectors, embed_edges, spherical_harmonics_irreps
from ..init import reset_children
from ..radial import RadialMLP, apply_mlp
from .autograd import kernel_aggregate
from .kernel import fused_kernel
from .linear_out import BlockLinear
from .plan import BlockLayout

#: Values of :attr:`EquivariantConv.backend`.
BACKENDS = ("reference", "torch", "cpp")


class EquivariantConv(MessagePassing):
    r"""Tensor-product convolution on e3nn irreps (Tensor Field Networks, NequIP).

    .. math::
        x'_i = W_{out} \frac{1}{\sqrt{\bar n}} \sum_{j \in \mathcal N(i)}
               (W_{in} x_j) \otimes_{R(r_{ij})} Y(\hat r_{ij})

    The tensor product is channel-wise ("uvu": every input channel with every spherical harmonic),
    its path weights come from a radial MLP (:class:`~molequi.nn.radial.RadialMLP`) on a Bessel
    basis times a smooth polynomial cutoff envelope (so messages vanish smoothly at ``r_max``), and
    the sum over neighbours is divided by the square root of the average neighbour count
    ``avg_num_neighbors``.

    e3nn's per-edge ``TensorProduct`` module (``self.tensor_product``, used by :meth:`message`) is
    the reference definition; the ``"torch"`` and ``"cpp"`` backends (see the module docstring)
    compute the same numbers per input irrep block, never materialising per-edge messages in
    ``irreps_mid`` layout, and apply ``linear_out`` to the blocks' node outputs per irrep type
    (:class:`~molequi.nn.conv.linear_out.BlockLinear`).

    The layer keeps no edge-embedding state: models embed the edges once per graph
    (:class:`~molequi.nn.EdgeEmbedding`) and pass ``edge_sh`` and ``edge_radial``; called with
    ``pos`` or ``edge_vec`` only, it embeds them on the fly with ``irreps_sh``, ``r_max``,
    ``num_radial`` and ``cutoff_p``.

    Args:
        irreps_in: node feature irreps, e.g. ``"32x0e+16x1o"``.
        irreps_out: output irreps; each must be reachable from ``irreps_in (x) irreps_sh``.
        irreps_sh: spherical harmonics, irreps or ``lmax`` (default 2).
        num_radial: number of Bessel functions (default 8).
        r_max: cutoff radius in Å (default 5.0).
        radial_hidden: hidden widths of the radial MLP (default ``(64, 64)``).
        avg_num_neighbors: normaliser of the sum aggregation (default 1.0; set it from the data).
        cutoff_p: exponent of the cutoff envelope (default 6).
        backend: ``"reference"``, ``"torch"`` or ``"cpp"`` (default; see the module docstring).

    Shapes:
        - **input:** ``x [N, irreps_in.dim]``, ``pos [N, 3]``, ``edge_index [2, E]`` (PyG: row 0 is
          the source ``j``, row 1 the target ``i``); optionally ``edge_vec [E, 3]`` (from target to
          source, periodic images included) or precomputed ``edge_sh [E, irreps_sh.dim]`` and
          ``edge_radial [E, num_radial]``.
        - **output:** ``[N, irreps_out.dim]``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str | int = 2,
        num_radial: int = 8,
        r_max: float = 5.0,
        radial_hidden: tuple[int, ...] = (64, 64),
        avg_num_neighbors: float = 1.0,
        cutoff_p: int = 6,
        backend: str = "cpp",
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.irreps_sh = spherical_harmonics_irreps(irreps_sh)
        self.num_radial, self.r_max, self.cutoff_p = int(num_radial), float(r_max), int(cutoff_p)
        self.avg_num_neighbors = float(avg_num_neighbors)

        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(self.irreps_in):
            for k, (_, ir_sh) in enumerate(self.irreps_sh):
                for ir in ir_in * ir_sh:
                    if ir in wanted:
                        instructions.append((i, k, len(mid), "uvu", True))
                        mid.append((mul, ir))
        reached = {ir for _, ir in mid}
        missing = [str(ir) for ir in wanted if ir not in reached]
        if missing:
            raise ValueError(
                f"EquivariantConv: irreps_out {self.irreps_out} contains {', '.join(missing)}, which "
                f"irreps_in {self.irreps_in} (x) irreps_sh {self.irreps_sh} cannot produce"
            )
        self.irreps_mid = o3.Irreps(mid)
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.tensor_product = o3.TensorProduct(
            self.irreps_in, self.irreps_sh, self.irreps_mid, instructions, shared_weights=False, internal_weights=False
        )
        self.radial_mlp = RadialMLP(num_radial, radial_hidden, self.tensor_product.weight_numel)
        self.linear_out = o3.Linear(self.irreps_mid, self.irreps_out)
        #: The tensor product per input irrep block, and ``linear_out`` on its outputs (constants only;
        #: nothing in the state dict).
        self.layout = BlockLayout(self.tensor_product, self.avg_num_neighbors)
        self.block_linear = BlockLinear(self.layout, self.linear_out)
        self.backend = backend
        #: Edges per chunk of the ``"cpp"`` backend (its per-edge intermediates stay in cache).
        self.edge_chunk = 4096
        #: The ``"cpp"`` backend keeps the radial MLP's activations for the backward pass (instead of
        #: recomputing them) when they take at most this many bytes.
        self.edge_cache_bytes = 64 * 2**20

    @property
    def backend(self) -> str:
        """``"reference"``, ``"torch"`` or ``"cpp"`` (see the module docstring); settable."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"EquivariantConv: backend must be one of {', '.join(BACKENDS)}; got {value!r}")
        self._backend = value

    def reset_parameters(self) -> None:
        """Draw new weights as the constructor did (PyG's contract; :func:`molequi.nn.init.reset_children`)."""
        reset_children(self)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        edge_index: torch.Tensor,
        edge_vec: torch.Tensor | None = None,
        edge_sh: torch.Tensor | None = None,
        edge_radial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [N, irreps_in.dim] -> [N, irreps_out.dim]`` (see the class docstring for the edge inputs).

        Raises:
            ValueError: no edge geometry given, or (``"cpp"``) an ``edge_index`` entry outside ``[0, N)``.
        """
        if edge_sh is None or edge_radial is None:
            if edge_vec is None:
                if pos is None:
                    raise ValueError("EquivariantConv: needs pos, edge_vec, or both edge_sh and edge_radial")
                edge_vec = edge_vectors(pos, edge_index)
            edge_sh, edge_radial = embed_edges(edge_vec, self.irreps_sh, self.r_max, self.num_radial, self.cutoff_p)
        x = self.linear_in(x)
        if self.backend == "reference":
            weights = self.radial_mlp(edge_radial)
            aggregated = self.propagate(edge_index, x=x, edge_sh=edge_sh, weights=weights)
            return self.linear_out(aggregated / math.sqrt(self.avg_num_neighbors))
        matrices = self.radial_mlp.folded_matrices(self.layout.weight_perm)  # outputs in block order
        kernel = fused_kernel() if self.backend == "cpp" and x.device.type == "cpu" else None
        if kernel is not None and self.layout.max_mul <= kernel.max_channels:
            aggregated = kernel_aggregate(
                self.layout, x, edge_index, edge_sh, edge_radial, matrices, self.edge_chunk, self.edge_cache_bytes
            )
        else:
            aggregated = self.layout.torch_aggregate(x, edge_index, edge_sh, apply_mlp(edge_radial, matrices))
        return self.block_linear(aggregated, self.linear_out)

    def message(self, x_j: torch.Tensor, edge_sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per edge: ``x_j [E, irreps_in.dim] (x) edge_sh [E, irreps_sh.dim] -> [E, irreps_mid.dim]``."""
        return self.tensor_product(x_j, edge_sh, weights)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.irreps_in} -> {self.irreps_out}, sh={self.irreps_sh}, backend={self.backend})"
