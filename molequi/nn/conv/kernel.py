"""Build and load the fused tensor-product C++ kernel (``csrc/fused_tp.cpp``), once per machine.

The kernel is compiled with ``torch.utils.cpp_extension.load`` into ``TORCH_EXTENSIONS_DIR``
(default ``~/.cache/torch_extensions/...``) under a name that hashes the source, the compiler
flags, the torch version and the CPU. The source is copied into that build directory and
compiled from there, so one build serves every later process and every checkout or installation
of the same source on the machine; "building ..." is logged only when a build actually runs.
Without a C++ compiler (or headers) the load fails once per process with a warning and
:class:`~molequi.nn.EquivariantConv` uses its PyTorch path (same results, slower).
``MOLEQUI_FUSED_KERNEL=0`` in the environment disables the kernel without a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

_LOG = logging.getLogger(__name__)

#: The kernel's C++ source (shipped as package data).
SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_tp.cpp"
#: Compiler and linker flags.
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-std=c++17")
LDFLAGS = ("-fopenmp",)
#: Environment variable; ``0`` disables the kernel.
ENVIRONMENT = "MOLEQUI_FUSED_KERNEL"

_module: Any = None  # None: not loaded yet; False: unavailable in this process


def kernel_name(source: str) -> str:
    """The extension's name: a hash of ``source``, the flags, the torch version and the CPU."""
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            cpu = next((line for line in info if line.startswith("flags")), "")
    key = "|".join([source, torch.__version__, platform.machine(), cpu, *CFLAGS, *LDFLAGS])
    return "molequi_fused_tp_" + hashlib.sha1(key.encode()).hexdigest()[:12]


def build_directory(name: str) -> Path:
    """Where the extension ``name`` is built: ``$TORCH_EXTENSIONS_DIR/<name>`` or torch's default root."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name


def is_built(directory: Path, name: str) -> bool:
    """Whether ``directory`` holds an up-to-date build of ``name`` (so loading it compiles nothing)."""
    library, source = directory / f"{name}.so", directory / SOURCE.name
    return library.is_file() and source.is_file() and library.stat().st_mtime >= source.stat().st_mtime


def _place_source(directory: Path, text: str) -> Path:
    """The build directory's copy of the source, written (atomically) only when missing or different."""
    source = directory / SOURCE.name
    if not source.is_file() or source.read_text() != text:
        partial = directory / f".{SOURCE.name}.{os.getpid()}"
        partial.write_text(text)
        os.replace(partial, source)
    return source


def fused_kernel() -> Any:
    """The compiled kernel module, building it on first use on this machine; ``None`` where unavailable.

    The module has ``fused_tp_forward``, ``fused_tp_backward``, ``fused_tp_double_backward``,
    ``parallel_parts(num_edges)`` and ``max_channels`` (see ``csrc/fused_tp.cpp``).
    """
    global _module
    if _module is None:
        _module = False
        if os.environ.get(ENVIRONMENT, "1") != "0":
            try:
                _module = _load()
            except Exception as error:  # no compiler, no headers, ...: the PyTorch path serves
                warnings.warn(
                    f"molequi: the fused C++ tensor-product kernel is unavailable ({type(error).__name__}: "
                    f"{str(error)[:200]}); EquivariantConv uses its PyTorch path (same results, slower)",
                    RuntimeWarning,
                    stacklevel=2,
                )
    return _module or None


def _load() -> Any:
    from torch.utils.cpp_extension import load

    text = SOURCE.read_text()
    name = kernel_name(text)
    directory = build_directory(name)
    directory.mkdir(parents=True, exist_ok=True)
    source = _place_source(directory, text)
    if not is_built(directory, name):
        _LOG.info("building the fused tensor-product kernel %s (once per machine, about a minute)", name)
    return load(
        name,
        sources=[str(source)],
        extra_cflags=list(CFLAGS),
        extra_ldflags=list(LDFLAGS),
        build_directory=str(directory),
    )
