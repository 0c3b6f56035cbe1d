"""Quorum mode's configuration: ``voters`` in [node], ``--voter``, ``voters=`` in the API."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import clerk
from clerk._config import MAX_VOTERS, load_config
from clerk.node import build_parser, config_from_args
from clerk.testing import LocalCluster

pytestmark = pytest.mark.timeout(30)

V3 = ["a@10.0.0.5", "b@10.0.0.6", "c@10.0.0.7"]


def _toml(tmp_path: Path, node: str) -> str:
    path = tmp_path / "clerk.toml"
    path.write_text("[node]\n" + node)
    return str(path)


def test_voters_from_toml_flags_and_api(tmp_path: Path) -> None:
    path = _toml(tmp_path, f'name = "a@10.0.0.5"\nvoters = {V3!r}\n'.replace("'", '"'))
    config = load_config(path, {})
    assert config.voters == tuple(V3) and config.is_voter
    args = build_parser().parse_args(["--name", "d@10.0.0.8", "--voter", V3[0], "--voter", V3[1],
                                      "--voter", V3[2]])
    flags = config_from_args(args)
    assert flags.voters == tuple(V3) and not flags.is_voter
    # Flags win over the file, as for every key.
    args = build_parser().parse_args(["--config", path, "--voter", "a@10.0.0.5"])
    assert config_from_args(args).voters == ("a@10.0.0.5",)
    assert clerk.Node(name="a@10.0.0.5", voters=V3).config.voters == tuple(V3)
    spec = clerk.node_spec(name="a@10.0.0.5", voters=V3)
    assert spec.args[0].voters == tuple(V3)
    assert load_config(None, {"name": "a@h"}).voters == (), "no voters: the default mode"


@pytest.mark.parametrize(("voters", "problem"), [
    ("a@h", "must be a list of node names"),
    (["a@h", "nope"], "voters[1] = 'nope': must be name@host"),
    (["a@h", 3], "voters[1] = 3"),
    (["a@h", "b@h", "a@h"], "lists a@h twice"),
    ([f"n{i}@h" for i in range(MAX_VOTERS + 1)], "has 8 voters: 1 to 7"),
])
def test_bad_voters_are_errors_naming_the_source_and_key(
        tmp_path: Path, voters: object, problem: str) -> None:
    with pytest.raises(clerk.ConfigError) as err:
        clerk.Node(name="a@h", voters=voters)  # type: ignore[arg-type]
    assert str(err.value).startswith("clerk.Node(...): voters")
    assert problem in str(err.value)
    path = _toml(tmp_path, f'name = "a@h"\nvoters = {_toml_list(voters)}\n')
    with pytest.raises(clerk.ConfigError) as err:
        load_config(path, {})
    assert str(err.value).startswith(f"{path}: voters") and problem in str(err.value)


def _toml_list(v: object) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    assert isinstance(v, list)
    return "[" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in v) + "]"


def test_bad_voter_flag_names_the_command_line() -> None:
    args = build_parser().parse_args(["--name", "a@h", "--voter", "bad"])
    with pytest.raises(clerk.ConfigError, match=r"^command line: voters\[0\] = 'bad'"):
        config_from_args(args)


def test_an_even_count_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clerk.config"):
        config = clerk.Node(name="a@h", voters=["a@h", "b@h", "c@h", "d@h"]).config
    assert len(config.voters) == 4
    assert "4 voters tolerate no more failures than 3" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clerk.config"):
        clerk.Node(name="a@h", voters=V3)
    assert "tolerate" not in caplog.text


def test_a_voter_needs_a_data_dir(tmp_path: Path) -> None:
    with pytest.raises(clerk.ConfigError) as err:
        clerk.Node(name="a@10.0.0.5", voters=V3, data_dir=False)
    text = str(err.value)
    assert text.startswith("clerk.Node(...): data_dir = False") and "voters" in text
    with pytest.raises(clerk.ConfigError, match="data_dir.*voters"):
        clerk.node_spec(name="a@10.0.0.5", voters=V3, data_dir=False)
    args = build_parser().parse_args(["--name", "a@10.0.0.5", "--no-data-dir",
                                      "--voter", V3[0], "--voter", V3[1], "--voter", V3[2]])
    with pytest.raises(clerk.ConfigError, match="^command line: data_dir.*--no-data-dir.*voters"):
        config_from_args(args)
    path = _toml(tmp_path, f'name = "a@10.0.0.5"\ndata_dir = false\nvoters = {_toml_list(V3)}\n')
    with pytest.raises(clerk.ConfigError, match=f"^{path}: data_dir"):
        load_config(path, {})
    # A node that is not a voter may run without one, as in the default mode.
    assert clerk.Node(name="d@10.0.0.8", voters=V3, data_dir=False).config.voters == tuple(V3)


def test_local_cluster_voters() -> None:
    with LocalCluster(5, voters=3, start=False) as cluster:
        assert cluster.voters == cluster.names[:3]
        text = cluster.write_config(cluster.names[4]).read_text()
        assert f"voters = {_toml_list(cluster.names[:3])}" in text
    with LocalCluster(3, voters=["n2@127.0.0.1"], start=False) as cluster:
        assert cluster.voters == ["n2@127.0.0.1"]
    with LocalCluster(2, start=False) as cluster:
        assert "voters" not in cluster.write_config(cluster.names[0]).read_text()
    with pytest.raises(ValueError, match="voters=6"):
        LocalCluster(5, voters=6, start=False)
    with pytest.raises(ValueError, match="data directories"):
        LocalCluster(3, voters=3, data_dir=False, start=False)
