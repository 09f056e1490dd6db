from __future__ import annotations

import pytest

from horus.sentinel.store import SqliteIncidentStore


@pytest.fixture
def store(tmp_path):
    opened = SqliteIncidentStore.open(tmp_path)
    yield opened
    opened.close()
