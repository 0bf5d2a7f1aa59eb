"""What only PostgreSQL shows: several app processes sharing one server, a server that goes down
and comes back, durable commits whatever the server's default, the column types.  (Everything the
two databases share is tested on both in test_feedback.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import postgres_cluster
import pytest
import sqlalchemy as sa

from npcnn.digits.feedback import Correction, FeedbackStore, StoreUnavailable

ROOT = Path(__file__).resolve().parents[2]
postgres_cluster_fixture = postgres_cluster.postgres_cluster_fixture
postgres_database_fixture = postgres_cluster.postgres_database_fixture


def a_correction(label: int | str = 4) -> Correction:
    return Correction(image=np.full((28, 28), 9, np.uint8), label=label, predicted=1,
                      confidence=0.5, model_version="pg-test")  # fmt: skip


# One app replica: waits for the others, then creates the schema (if no one has) and writes.
REPLICA = """
import sys, time
import numpy as np
from npcnn.digits.feedback import Correction, FeedbackStore
url, start, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with FeedbackStore(url) as store:
    for _ in range(n):
        print(store.add(Correction(np.zeros((28, 28), np.uint8), 1, 2, 0.5, "replica")))
"""


def test_replicas_starting_at_once_share_one_schema_and_distinct_ids(postgres_database):
    """4 processes start together on an empty database: one schema, 4 x 10 distinct ids."""
    start = time.time() + 3  # time for every interpreter to start and import
    replicas = [subprocess.Popen([sys.executable, "-c", REPLICA, postgres_database, str(start),
                                  "10"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(4)]  # fmt: skip
    outputs = [r.communicate(timeout=120) for r in replicas]
    for replica, (_, err) in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, err
    ids = [int(line) for out, _ in outputs for line in out.split()]
    assert len(ids) == 40 and len(set(ids)) == 40
    with FeedbackStore(postgres_database) as store:
        assert store.count() == 40 and store.schema_versions() == [1]


def test_a_server_that_goes_down_is_unavailable_then_reconnected():
    cluster = postgres_cluster.start_cluster()  # its own server: this test stops it
    try:
        with FeedbackStore(cluster.url()) as store:
            first = store.add(a_correction())
            cluster.stop_server()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="unavailable"):
                store.add(a_correction())  # the pooled connection is dead: no hang, no crash
            with pytest.raises(StoreUnavailable):
                store.count()
            assert time.monotonic() - started < 10
            cluster.start_server()
            second = store.add(a_correction())  # the same store reconnects by itself
            assert second > first and store.count() == 2
    finally:
        cluster.stop()


def test_commits_are_synchronous_even_if_the_server_says_otherwise(
    postgres_cluster, postgres_database
):
    name = sa.make_url(postgres_database).database
    postgres_cluster.admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    with FeedbackStore(postgres_database) as store:
        store.add(a_correction())
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


def test_the_columns_have_postgres_types(postgres_database):
    with FeedbackStore(postgres_database) as store:
        store.ensure_schema()
        with store.engine.connect() as conn:
            types = dict(conn.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'corrections'"
            ).all())  # fmt: skip
    assert types["id"] == "bigint"
    assert types["image"] == types["upload"] == "bytea"
    assert types["created"] == "timestamp without time zone"  # holding UTC
