"""Streaming frames out of any ASE-readable file (extxyz, traj, ASE databases, SDF, ...)."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import ase.db
import ase.io
from ase import Atoms
from ase.io.formats import UnknownFileTypeError, filetype, ioformats, string2index

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
    try:
        fmt = format or filetype(str(path), read=True)
    except UnknownFileTypeError as err:
        raise ValueError(f"{path}: unknown file format ({err}); pass format=... with an ASE format name") from None
    if fmt not in ioformats:
        raise ValueError(f"{path}: unknown file format {fmt!r}; pass format=... with an ASE format name")
    return fmt


def iter_frames(path: str | Path, index: str = ":", format: str | None = None) -> Iterator[tuple[int, Atoms]]:
    """Yield ``(frame number, atoms)`` one frame at a time, never holding the whole file.

    Databases are read row by row (``atoms.info`` then holds the row's
    ``key_value_pairs`` and ``data``); multi-molecule SDF files record by record (ASE's
    own SDF reader returns only the first molecule); all else through :func:`ase.io.iread`.

    Args:
        path: the file.
        index: ASE index string (``":"``, ``"10:20"``, ``"::5"``, ``"-1"``). Frame numbers
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
    if fmt in DATABASE_FORMATS:
        rows = ase.db.connect(str(path), type=fmt).select()
        frames = (row.toatoms(add_additional_information=True) for row in _select(rows, selection))
    elif fmt == "sdf":
        frames = _select(_sdf_records(path), selection)
    else:
        frames = ase.io.iread(str(path), index=index, format=fmt)
    start, step = (
        (selection.start or 0, selection.step or 1)
        if isinstance(selection, slice) and _is_forward(selection)
        else (0, 1)
    )
    if isinstance(selection, int) and selection >= 0:
        start = selection
    for k in itertools.count():
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as err:  # ASE raises many types for malformed files
            raise ValueError(f"{path}: cannot parse frame {start + k * step} (0-based) as {fmt}: {err}") from err
        yield start + k * step, atoms


def _is_forward(selection: slice) -> bool:
    """True for a slice without negative parts (it can be applied while streaming)."""
    return all(v is None or v >= 0 for v in (selection.start, selection.stop)) and (selection.step or 1) > 0


def _select(records: Iterator, selection: int | slice) -> Iterator:
    """Apply an index to a stream, streaming when the index allows it."""
    if isinstance(selection, slice) and _is_forward(selection):
        return itertools.islice(records, selection.start, selection.stop, selection.step)
    listed = list(records)  # negative or single indices need the record count
    return iter([listed[selection]] if isinstance(selection, int) else listed[selection])


def _sdf_records(path: Path) -> Iterator[Atoms]:
    """Molecules of a (multi-record) SDF file, one ``$$$$``-terminated record at a time."""
    with open(path) as f:
        lines: list[str] = []
        for line in f:
            if line.startswith("$$$$"):
                yield ase.io.read(io.StringIO("".join(lines)), format="sdf")
                lines = []
            else:
                lines.append(line)
        if "".join(lines).strip():
            yield ase.io.read(io.StringIO("".join(lines)), format="sdf")
