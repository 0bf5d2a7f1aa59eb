"""A throwaway PostgreSQL server for the tests, and one fresh database per test.

``initdb`` into a new temporary folder, ``pg_ctl start`` on a free 127.0.0.1 port (its Unix socket
in the same folder), trust authentication for the superuser ``npcnn``; at the end, stop it and
delete the folder.  Nothing outside that folder is touched: not the distribution's own cluster,
not its port.

The binaries: ``$NPCNN_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian's
``postgresql`` package, which ``.ci/run`` installs), else ``initdb`` on the PATH.  Without them the
PostgreSQL tests skip, saying why - except under CI (``CI`` set), where they fail instead, so that
they cannot silently vanish.  ``initdb`` refuses to run as root: as root, the server runs as the
``postgres`` user (created by Debian's package) or else ``nobody``.

Use: import the module in a test module and bind its fixtures there (any names will do)::

    import postgres_cluster
    postgres_cluster_fixture = postgres_cluster.postgres_cluster_fixture
    postgres_database_fixture = postgres_cluster.postgres_database_fixture
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "npcnn"


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or ``None``."""
    candidates = []
    if os.environ.get("NPCNN_PG_BINDIR"):
        candidates.append(Path(os.environ["NPCNN_PG_BINDIR"]))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(
        (Path(p) for p in versions), key=lambda p: int(p.parent.name), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL server in a temporary folder; ``start()``, ``url(db)``, ``stop()``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="npcnn-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.run_as = None
        if os.geteuid() == 0:  # initdb refuses root: hand the folder to an ordinary user
            self.run_as = next(u for u in ("postgres", "nobody") if _user_exists(u))
            user = pwd.getpwnam(self.run_as)
            os.chown(self.folder, user.pw_uid, user.pw_gid)

    def _run(self, *command: str, timeout: float = 120) -> None:
        argv = [str(self.bindir / command[0]), *command[1:]]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        done = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "LC_ALL": "C"})  # fmt: skip
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )

    def start(self) -> None:
        """Create the cluster and start its server."""
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        self.start_server()

    def start_server(self) -> None:
        # fsync off: a throwaway server need not survive a power cut (the app's commits are
        # still acknowledged only after COMMIT; that is what the tests check).
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=100")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop_server(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop_server("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run ``sql`` as the superuser on the ``postgres`` database, outside a transaction."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER,
                             dbname="postgres", autocommit=True) as conn:  # fmt: skip
            conn.execute(sql)

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def unavailable(reason: str) -> None:
    """Skip - or, under CI, fail: the PostgreSQL tests must run there."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def start_cluster() -> Cluster:
    """A running cluster, or skip/fail saying why there is none."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install 'psycopg[binary]'")
    cluster = Cluster(bindir)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


# Several test modules bind these fixtures; they share one server per test session (and process).
_shared: list[Cluster] = []


@pytest.fixture(scope="session", name="postgres_cluster")
def postgres_cluster_fixture() -> Iterator[Cluster]:
    """The session's throwaway PostgreSQL server (started on first use)."""
    if not _shared:
        _shared.append(start_cluster())
    yield _shared[0]
    if _shared:  # the first module's session teardown stops it; later ones find it gone
        _shared.pop().stop()


@pytest.fixture(name="postgres_database")
def postgres_database_fixture(postgres_cluster: Cluster) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on that server, dropped after the test."""
    name = postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)
