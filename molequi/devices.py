"""Device names (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ...) checked against this torch build and machine."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device, local_rank: int = 0) -> torch.device:
    """The device ``name`` stands for, refused with a clear message when torch cannot use it.

    ``auto`` is ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; plain ``cuda`` is
    ``cuda:<local_rank>`` (the GPU of a DDP process); other names are taken as given.

    Raises:
        ValueError: an unknown device name; CUDA asked for on a torch build without CUDA, on a
            machine without a visible GPU, or with an index beyond the GPUs present.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device {name!r}: not a torch device name (e.g. auto, cpu, cuda, cuda:1)") from error
    if device.type != "cuda":
        return device
    if torch.version.cuda is None:
        raise ValueError(
            f"device {name!r}: CUDA is not available in this torch build (torch {torch.__version__}, CPU only); "
            "install a CUDA build of torch or use device cpu"
        )
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (no GPU visible); use device cpu")
    index = local_rank if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: GPU {index} asked for, but only {torch.cuda.device_count()} are visible")
    return torch.device("cuda", index)
