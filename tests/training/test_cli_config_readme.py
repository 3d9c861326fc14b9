"""examples/configs/README.md matches the config parser: its YAML parses, its key lists are the real keys."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from molequi.training import ConfigError, DataConfig, LossConfig, OptimConfig, TrainConfig, load_config

SECTIONS = {"data", "model", "loss", "optim"}


@pytest.fixture
def readme(repository) -> str:
    return (repository / "examples" / "configs" / "README.md").read_text()


def _bullet(readme: str, title: str) -> str:
    """The text of the bullet ``* **title**: ...`` (up to the next bullet or blank line)."""
    match = re.search(rf"^\* \*\*{re.escape(title)}\*\*(.*?)(?=^\* |^\s*$)", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, f"no bullet {title!r}"
    return match.group(1)


def test_yaml_examples_parse(readme):
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        load_config(yaml.safe_load(block))


def test_top_level_keys_are_listed_as_top_level(readme):
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - SECTIONS
    listed = set(re.findall(r"`(\w+)`\s+\(", _bullet(readme, "top-level keys")))
    assert listed == fields
    with pytest.raises(ConfigError, match="run"):  # there is no run section
        load_config({"data": {"path": "x.extxyz", "train_size": 8, "val_size": 2}, "run": {"max_epochs": 1}})


@pytest.mark.parametrize("section, config_class", [("data", DataConfig), ("loss", LossConfig), ("optim", OptimConfig)])
def test_section_keys_are_listed(readme, section, config_class):
    bullet = _bullet(readme, section)
    assert [f.name for f in dataclasses.fields(config_class) if f"`{f.name}`" not in bullet] == []
