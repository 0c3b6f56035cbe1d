"""``metrics_port`` / ``--metrics-port``: parsed, validated, named in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from clerk import ConfigError, load_config
from clerk.node import build_parser, config_from_args


def test_metrics_port_from_toml_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "a@127.0.0.1"\nmetrics_port = 9400\n')
    assert load_config(str(path), {}).metrics_port == 9400
    args = build_parser().parse_args(["--config", str(path), "--metrics-port", "9500"])
    assert config_from_args(args).metrics_port == 9500  # the flag wins
    assert load_config(None, {"name": "a@127.0.0.1"}).metrics_port is None  # off by default


@pytest.mark.parametrize("value", ['"9400"', "0", "70000", "true"])
def test_a_bad_metrics_port_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\nname = "a@127.0.0.1"\nmetrics_port = {value}\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path), {})
    assert err.value.key == "metrics_port" and str(path) in str(err.value)
