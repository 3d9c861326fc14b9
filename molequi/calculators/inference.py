"""Inference with one model or a committee: prepared once, run on a batch, ASE results (mean and spread)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress

from ..models import AtomisticModel, load_model

#: A model file path or a model instance.
ModelLike = str | os.PathLike | AtomisticModel


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"float32"``/``"float64"`` (or a ``torch.dtype``, or None) as a ``torch.dtype`` (or None)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype such as 'float32' or 'float64', got {dtype!r}")
    return resolved


def prepare_models(
    model: ModelLike | Sequence[ModelLike], device: str | torch.device, dtype: torch.dtype | str | None
) -> list[AtomisticModel]:
    """Load, copy and move models for inference, once.

    Each model is loaded from its file (or deep-copied, so the caller's module is left untouched),
    moved to ``device`` and ``dtype`` (default: the first model's dtype), put in eval mode and
    its parameters frozen.

    Raises:
        ValueError: no model, or committee members with different cutoffs.
    """
    items = [model] if isinstance(model, (str, os.PathLike, torch.nn.Module)) else list(model)
    if not items:
        raise ValueError("no model given")
    models = [load_model(m) if isinstance(m, (str, os.PathLike)) else copy.deepcopy(m) for m in items]
    dtype = resolve_dtype(dtype) or next(models[0].parameters()).dtype
    for m in models:
        m.to(device=device, dtype=dtype).eval()
        m.requires_grad_(False)
    cutoffs = sorted({m.r_max for m in models})
    if len(cutoffs) > 1:
        raise ValueError(f"committee members must share one cutoff, got r_max values {cutoffs}")
    return models


def known_elements(models: Sequence[AtomisticModel]) -> list[int] | None:
    """Atomic numbers every model was trained on (None if no model declares its species)."""
    declared = [set(m.config["species"]) for m in models if "species" in getattr(m, "config", {})]
    return sorted(set.intersection(*declared)) if declared else None


def evaluate(
    models: Sequence[AtomisticModel], data: dict[str, torch.Tensor], compute_stress: bool
) -> dict[str, torch.Tensor]:
    """Energies, forces and (optionally) stresses of every model on one batch, detached.

    Args:
        models: the committee (``M`` models, already prepared).
        data: model input (``z, pos, edge_index, edge_shift, cell, pbc``, optional ``batch``).
        compute_stress: also compute stress (every graph must be periodic).

    Returns:
        ``energy [M, G]``, ``forces [M, N, 3]`` and, if asked, ``stress [M, G, 3, 3]``; plus the
        first model's ``fragment_index [N]`` where it has one (an N-body network's subsystems).
    """
    outputs = [m(data, compute_forces=True, compute_stress=compute_stress) for m in models]
    names = ("energy", "forces", "stress") if compute_stress else ("energy", "forces")
    result = {name: torch.stack([out[name].detach() for out in outputs]) for name in names}
    if "fragment_index" in outputs[0]:
        result["fragment_index"] = outputs[0]["fragment_index"].detach()
    return result


def structure_results(energy: np.ndarray, forces: np.ndarray, stress: np.ndarray | None) -> dict[str, Any]:
    """ASE results of one structure from its per-model predictions: the committee mean and spread.

    Args:
        energy: ``[M]`` eV; forces: ``[M, N, 3]`` eV/Å; stress: ``[M, 3, 3]`` eV/Å^3 or None.

    Returns:
        ``energy`` and ``free_energy`` (float), ``forces [N, 3]``, ``stress [6]`` (Voigt, where
        given); with more than one model also ``energy_std``, ``forces_std [N, 3]`` and
        ``stress_std [6]``: standard deviations over the members (``ddof=0``).
    """
    energy, forces = energy.astype(np.float64), forces.astype(np.float64)
    results: dict[str, Any] = {"energy": float(energy.mean()), "forces": forces.mean(axis=0)}
    results["free_energy"] = results["energy"]
    if stress is not None:
        voigt = np.stack([full_3x3_to_voigt_6_stress(s) for s in stress.astype(np.float64)])  # [M, 6]
        results["stress"] = voigt.mean(axis=0)
    if len(energy) > 1:
        results["energy_std"] = float(energy.std())
        results["forces_std"] = forces.std(axis=0)
        if stress is not None:
            results["stress_std"] = voigt.std(axis=0)
    return results
