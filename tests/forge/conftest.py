"""The local forge's fixtures: a bare repository with ``main`` and a clone to push from, and its forge."""

from __future__ import annotations

import pytest

from leviathan_lib.forge.local import LocalForge
from tests.forge.test_local import Target


@pytest.fixture
def target(tmp_path) -> Target:
    return Target(tmp_path)


@pytest.fixture
def forge(target) -> LocalForge:
    return LocalForge(target.bare)
