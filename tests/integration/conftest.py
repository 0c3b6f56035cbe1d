"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stall_tasks import STALL_DIR


@pytest.fixture
def stall_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory the test-only stall hook watches (``tests.integration.stall_tasks``),
    named in the environment the cluster's node processes inherit."""
    d = tmp_path / "stalls"
    d.mkdir()
    monkeypatch.setenv(STALL_DIR, str(d))
    yield d
