import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

REQUIRED = os.environ.get("CARMA_REQUIRE_POSTGRES") == "1"


@pytest.fixture
def shared_url():
    """A fresh schema on the test server: one shared log for the processes of one test."""
    base = os.environ.get("CARMA_TEST_DATABASE_URL")
    if not base:
        message = (
            'no PostgreSQL server: start one with eval "$(.ci/postgres start)", '
            "which sets CARMA_TEST_DATABASE_URL"
        )
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    schema = f"shared_{secrets.token_hex(4)}"
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(query=f"schema={schema}"))
    yield url
    with psycopg.connect(urlunsplit(parts._replace(query="")), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
