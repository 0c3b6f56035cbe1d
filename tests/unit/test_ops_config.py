"""``metrics_port`` / ``--metrics-port`` and ``dispatch_lead`` (TOML, flag, ``clerk.Node``,
``clerk.node_spec``): parsed, validated, named in errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import clerk
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


def test_dispatch_lead_from_toml_and_flag(tmp_path: Path) -> None:
    from clerk._lead import DISPATCH_LEAD_MS

    path = tmp_path / "c.toml"
    path.write_text('[node]\nname = "a@127.0.0.1"\ndispatch_lead = 5\n')
    assert load_config(str(path), {}).dispatch_lead == 5
    args = build_parser().parse_args(["--config", str(path), "--dispatch-lead", "0"])
    assert config_from_args(args).dispatch_lead == 0  # the flag wins; 0 turns it off
    assert load_config(None, {"name": "a@127.0.0.1"}).dispatch_lead == DISPATCH_LEAD_MS


@pytest.mark.parametrize("value", ['"5"', "-1", "51", "true", "2.5"])
def test_a_bad_dispatch_lead_names_the_key(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\nname = "a@127.0.0.1"\ndispatch_lead = {value}\n')
    with pytest.raises(ConfigError) as err:
        load_config(str(path), {})
    assert err.value.key == "dispatch_lead" and str(path) in str(err.value)


def test_dispatch_lead_is_a_parameter_of_node_and_node_spec() -> None:
    from clerk._lead import DISPATCH_LEAD_MS

    assert clerk.Node(name="a@10.0.0.5").config.dispatch_lead == DISPATCH_LEAD_MS
    assert clerk.Node(name="a@10.0.0.5", dispatch_lead=0).config.dispatch_lead == 0
    # The spec's argument is the config the agent runs with (the same object as from TOML).
    spec = clerk.node_spec(name="a@10.0.0.5", dispatch_lead=50)
    assert spec.args[0].dispatch_lead == 50
    assert clerk.node_spec(name="a@10.0.0.5").args[0].dispatch_lead == DISPATCH_LEAD_MS


@pytest.mark.parametrize("value", ["5", -1, 51, True, 2.5])
def test_a_bad_dispatch_lead_parameter_names_the_caller_and_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        clerk.Node(name="a@10.0.0.5", dispatch_lead=value)  # type: ignore[arg-type]
    assert err.value.key == "dispatch_lead"
    assert str(err.value).startswith("clerk.Node(...): dispatch_lead")
    assert "0 to 50" in str(err.value)
    with pytest.raises(ConfigError) as err:
        clerk.node_spec(name="a@10.0.0.5", dispatch_lead=value)  # type: ignore[arg-type]
    assert str(err.value).startswith("clerk.node_spec(...): dispatch_lead")


def test_every_node_key_is_a_parameter_of_node_and_node_spec() -> None:
    """The README says every ``[node]`` key is a keyword of both: a new key must be added to
    them too (dispatch_lead was once TOML and flag only)."""
    import inspect

    from clerk._config import NodeConfig

    keys = {f.name for f in dataclasses.fields(NodeConfig)} - {"tasks", "source", "log_to"}
    for api in (clerk.Node, clerk.node_spec):
        assert keys <= set(inspect.signature(api).parameters), (api, keys)


def test_a_config_error_never_cuts_a_files_path() -> None:
    """A long value is cut to 80 characters in the message, a path never (it is what the
    reader must find: a voter file or a data directory under a deep temporary directory)."""
    from pathlib import Path

    from clerk import ConfigError

    deep = Path("/tmp") / ("d" * 120) / "voter.json"
    err = ConfigError("cmd", "voter file", deep, "is not valid JSON")
    assert str(deep) in str(err) and err.value == deep
    long_text = ConfigError("cmd", "name", "x" * 200, "is too long")
    assert "..." in str(long_text) and len(str(long_text)) < 140


def test_a_misspelt_node_key_is_named_with_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "a@127.0.0.1"\nprority = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    text = str(info.value)
    assert str(path) in text and "prority = 3" in text
    assert "unknown key (did you mean 'priority'? known: name, port" in text
