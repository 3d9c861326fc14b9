"""Streaming frames out of any ASE-readable file (extxyz, traj, ASE databases, ...)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import ase.db
import ase.io
from ase import Atoms
from ase.io.formats import UnknownFileTypeError, filetype, string2index

#: ASE formats that are databases, read row by row with their key-value pairs and data.
DATABASE_FORMATS = ("db", "json", "postgresql", "mysql")


def detect_format(path: Path, format: str | None = None) -> str:
    """The ASE format name of ``path`` (``format`` if given).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ASE cannot tell the format.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if format is not None:
        return format
    try:
        return filetype(str(path), read=True)
    except UnknownFileTypeError as err:
        raise ValueError(f"{path}: unknown file format ({err}); pass format=... with an ASE format name") from None


def iter_frames(path: str | Path, index: str = ":", format: str | None = None) -> Iterator[tuple[int, Atoms]]:
    """Yield ``(frame number, atoms)`` one frame at a time, never holding the whole file.

    Args:
        path: the file.
        index: ASE index string (``":"``, ``"10:20"``, ``"::5"``, ``"-1"``); frame numbers
            count from the start of the file when the selection has no negative parts,
            else from the start of the selection.
        format: ASE format name (default: detected from the file).

    Raises:
        FileNotFoundError, ValueError: see :func:`detect_format`; ValueError also when
        ASE fails to parse a frame.
    """
    path = Path(path)
    fmt = detect_format(path, format)
    selection = string2index(index)
    start, step = _frame_numbering(selection)
    if fmt in DATABASE_FORMATS:
        rows = ase.db.connect(str(path), type=fmt).select()
        if isinstance(selection, slice) and _is_forward(selection):
            selected = itertools.islice(rows, selection.start, selection.stop, selection.step)
        else:  # negative or single indices need the row count
            listed = list(rows)
            selected = [listed[selection]] if isinstance(selection, int) else listed[selection]
        frames: Iterator[Atoms] = (row.toatoms(add_additional_information=True) for row in selected)
    else:
        frames = ase.io.iread(str(path), index=index, format=fmt)
    k = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as err:  # ASE raises many types for malformed files
            raise ValueError(f"{path}: cannot parse frame {start + k * step} as {fmt}: {err}") from err
        yield start + k * step, atoms
        k += 1


def _is_forward(selection: slice) -> bool:
    """True for a slice without negative parts (it can be applied while streaming)."""
    return all(v is None or v >= 0 for v in (selection.start, selection.stop)) and (selection.step or 1) > 0


def _frame_numbering(selection: int | slice) -> tuple[int, int]:
    """First frame number and step of a selection, when they are known without reading."""
    if isinstance(selection, int):
        return (selection, 1) if selection >= 0 else (0, 1)
    return (selection.start or 0, selection.step or 1) if _is_forward(selection) else (0, 1)
