"""Spider's tests share one real ``airflow api-server`` per module (simple auth manager users: tests/api_server.py)."""

from __future__ import annotations

import pytest

from tests.api_server import ApiServer


@pytest.fixture(scope="module")
def server(airflow_db):
    api = ApiServer(airflow_db).start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def admin(server):
    with server.client("admin") as client:
        yield client


@pytest.fixture(scope="module")
def viewer(server):
    with server.client("viewer") as client:
        yield client
