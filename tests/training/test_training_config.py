"""The config is strict: unknown, missing and ill-typed keys are errors that name the key."""

from __future__ import annotations

import pytest

from molequi.training.config import ConfigError, TrainConfig, load_config

MINIMAL = {"data": {"path": "data.xyz", "train_size": 10, "val_size": 2}}


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_file_with_overrides(tmp_path):
    path = write(tmp_path, "data:\n  path: data.xyz\n  train_size: 0.8\n  val_size: 5\noptim:\n  lr: 1e-3\nmodel:\n  num_layers: 2\n")
    config = load_config(path, ["data.train_size=100", "max_minutes=2.5", "model.hidden_irreps=8x0e+4x1o", "data.test_path=null"])
    assert config.optim.lr == 1e-3  # exponent notation without a dot is a float
    assert config.data.train_size == 100 and config.data.val_size == 5
    assert config.max_minutes == 2.5 and config.data.test_path is None
    assert config.model.name == "EquivariantPotential"
    assert config.model.options == {"num_layers": 2, "hidden_irreps": "8x0e+4x1o"}
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.trian_size=3"], "unknown key 'data.trian_size'.*did you mean 'data.train_size'"),
        (["max_epoch=3"], "unknown key 'max_epoch'.*did you mean 'max_epochs'"),
        (["optim.learning_rate=0.1"], "unknown key 'optim.learning_rate'"),
        (["model.num_layer=2"], "unknown key 'model.num_layer'.*model EquivariantPotential.*did you mean 'model.num_layers'"),
        (["model.name=NoSuchModel"], "model.name: unknown model 'NoSuchModel'"),
        (["data.train_size=abc"], "data.train_size: expected int or float, got str 'abc'"),
        (["max_epochs=2.5"], "max_epochs: expected int, got float 2.5"),
        (["progress_bar=1"], "progress_bar: expected bool"),
        (["model.num_layers=two"], "model.num_layers: expected int"),
        (["model.radial_hidden=[8, x]"], r"model.radial_hidden\[1\]: expected int"),
        (["dtype=float16"], "dtype: expected one of 'float32', 'float64'"),
        (["optim.scheduler=linear"], "optim.scheduler: expected one of"),
        (["optim.lr=-1"], "optim.lr: must be positive"),
        (["data.val_size=1.5"], "data.val_size: a fraction must lie in"),
        (["data=3"], "data: expected a mapping"),
        (["device=gpu"], "device: expected auto, cpu, cuda or cuda:N"),
        (["loss.energy_weight=0", "loss.forces_weight=0"], "all weights are zero"),
        (["max_epochs"], "expected key=value"),
    ],
)
def test_bad_keys_and_values_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(MINIMAL, overrides)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key 'data.val_size'"):
        load_config({"data": {"path": "x.xyz", "train_size": 10}})


def test_duplicate_yaml_key_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="duplicate key 'seed'"):
        load_config(write(tmp_path, "seed: 1\nseed: 2\n"))
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_example_configs_are_valid(repository):
    configs = sorted((repository / "examples" / "configs").glob("*.yaml"))
    assert {"demo.yaml", "rmd17_aspirin.yaml", "rmd17_ethanol.yaml", "qm9_u0.yaml"} <= {p.name for p in configs}
    for path in configs:
        load_config(path)
