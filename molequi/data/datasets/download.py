"""Downloading a source file (atomically, with an optional checksum)."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import IO

from ...io import atomic_write


def download(url: str, path: Path, sha256: str | None = None) -> Path:
    """Fetch ``url`` to ``path`` via a temporary file; verify ``sha256`` when given.

    Raises:
        OSError: if the download fails (the message names the URL).
        ValueError: on a checksum mismatch (nothing is written).
    """

    def fetch(out: IO[bytes]) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
        except OSError as err:
            raise OSError(f"could not download {url}: {err}") from err
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(f"{url}: sha256 {digest.hexdigest()} differs from the expected {sha256}")

    atomic_write(path, fetch)
    return path
