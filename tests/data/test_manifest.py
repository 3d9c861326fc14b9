"""datasets/manifest.yaml: well-formed, and its checksums match the files they describe."""

import hashlib
import re
from pathlib import Path

import yaml

from molequi.data.datasets.md17 import MD17_FILES, MD17_URL, RMD17_URL
from molequi.data.datasets.qm9 import TARBALL_URL

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict:
    return yaml.safe_load((DATASETS / "manifest.yaml").read_text())


def test_checksums_are_hex_or_unknown_and_urls_match_the_readers():
    m = manifest()
    entries = [f for d in m["datasets"].values() for f in d["files"]] + m["test_fixtures"]
    for entry in entries:
        assert entry["sha256"] == "unknown" or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), entry
    urls = {f.get("url") for d in m["datasets"].values() for f in d["files"]}
    assert TARBALL_URL in urls and RMD17_URL in urls
    assert {MD17_URL.format(file=f) for f in MD17_FILES.values()} <= urls


def test_demo_files_match_their_checksums():
    for entry in manifest()["datasets"]["demo_emt"]["files"]:
        assert sha256(DATASETS / entry["name"]) == entry["sha256"], entry["name"]


def test_shared_fixtures_match_their_checksums(shared_data):
    for entry in manifest()["test_fixtures"]:
        assert sha256(shared_data / entry["file"]) == entry["sha256"], entry["file"]
