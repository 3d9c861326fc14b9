"""Strict YAML reading: duplicate keys are errors and ``1e-3`` is a float (PyYAML reads it as a string)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

#: Floats in exponent notation without a dot (``1e-3``), which YAML 1.1 leaves as strings.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys and reads ``1e-3`` as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it (``100`` -> int, ``1e-3`` -> float, ``null`` -> None)."""
    return yaml.load(text, Loader=StrictLoader) if text.strip() else None


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid YAML or a duplicate key, with the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        return yaml.load(path.read_text(), Loader=StrictLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: invalid YAML: {error}") from None


def dump_yaml(data: Any) -> str:
    """``data`` as block-style YAML with keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
