"""The corrections store: users' corrections of wrong answers, kept in a real database.

One correction is what the model saw and what the user says it is::

    store = FeedbackStore()              # NPCNN_DATABASE_URL, or the SQLite file below
    row_id = store.add(Correction(image=x28, label="7", predicted=1, confidence=0.83,
                                  model_version="shipped-2f1c9e", upload=png_bytes))

**Which database.**  ``NPCNN_DATABASE_URL`` (an SQLAlchemy URL) picks it:
``postgresql+psycopg://user:password@host:5432/dbname`` for PostgreSQL (several app replicas may
share it), ``sqlite:////absolute/path/feedback.sqlite3`` for a SQLite file of your choice.  Unset
or empty: the SQLite file ``$XDG_DATA_HOME/npcnn/feedback.sqlite3`` (``XDG_DATA_HOME`` defaults to
``~/.local/share``), created with its folder on first use - nothing to set up.  (It is data, not a
cache: it does not live beside the MNIST cache in ``~/.cache``.)  The same code serves both.

**Stored per correction**, and nothing else (no IP address, no client key, no user agent):
the model's 28x28 input (784 raw uint8 bytes, white digit on black), the original upload (at most
``MAX_UPLOAD_BYTES``, optional), the model's prediction and its confidence, the label (``"0"`` ..
``"9"``, or ``"none"``: not a digit), the model's version string, and the creation time (UTC).

**Durability.**  ``add`` returns the new id only after COMMIT has returned, so an acknowledged
correction is on disk.  SQLite runs in WAL mode (readers never block the writer) with
``synchronous=FULL``: the WAL is fsynced at every commit, so a committed correction survives a
power cut, not only a crash of the process (``NORMAL`` would be faster but may lose the last
commits on power loss).  Write transactions start with ``BEGIN IMMEDIATE`` and wait up to
``SQLITE_BUSY_TIMEOUT_S`` for the write lock.  PostgreSQL sessions set ``synchronous_commit=on``
whatever the server's default.

**Retention.**  ``NPCNN_FEEDBACK_RETENTION_DAYS`` (default 365; ``0`` keeps corrections forever):
``prune()`` - and ``python -m npcnn.digits.feedback prune`` - deletes older corrections.  Run it
daily (cron, or the app); nothing is deleted until it runs.

**Schema.**  Versioned in the table ``schema_version`` (one row per applied migration) and created
or migrated by this module on first use (``ensure_schema``), in one transaction that holds the
write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock), so several
processes may start at once.

**Errors.**  ``FeedbackError`` (also a ``ValueError``): a bad correction, refused before anything
is written (``UploadTooLarge`` for an oversized upload); ``StoreUnavailable``: the database cannot
be reached or used right now; ``ConfigError``: a malformed URL or setting.

**Command line**::

    python -m npcnn.digits.feedback export --out DIR    # DIR/labels.csv + DIR/images/<id>.png
    python -m npcnn.digits.feedback stats               # counts by label and by model version
    python -m npcnn.digits.feedback prune [--days N]    # delete older corrections

``--url`` overrides ``NPCNN_DATABASE_URL``.

``RateLimiter`` is an in-memory token bucket per opaque client key, for the app's routes.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from npcnn.errors import ConfigError, NpcnnError

SCHEMA_VERSION = 1
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # the original upload kept with a correction
MAX_MODEL_VERSION_CHARS = 100
LABELS = tuple("0123456789") + ("none",)
DEFAULT_RETENTION_DAYS = 365
SQLITE_BUSY_TIMEOUT_S = 10.0  # how long a writer waits for SQLite's write lock
CONNECT_TIMEOUT_S = 5  # PostgreSQL: give up connecting after this long
_ADVISORY_LOCK_KEY = 0x6E70636E6E_01  # "npcnn" + 1: serialises schema changes on PostgreSQL


class FeedbackError(NpcnnError, ValueError):
    """A correction is invalid (label, image, confidence, ...); nothing was stored.  HTTP 400."""


class UploadTooLarge(FeedbackError):
    """The original upload is larger than the store keeps; nothing was stored.  HTTP 413."""


class StoreUnavailable(NpcnnError):
    """The database cannot be reached or used right now (down, locked, full).  HTTP 503."""


# ------------------------------------------------------------------------------- the settings
def data_directory() -> Path:
    """Where the default SQLite file lives: ``$XDG_DATA_HOME/npcnn`` or ``~/.local/share/npcnn``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "npcnn"


def database_url(url: str | None = None) -> str:
    """``url``, else ``$NPCNN_DATABASE_URL``, else the default SQLite file."""
    url = url or os.environ.get("NPCNN_DATABASE_URL") or ""
    return url.strip() or f"sqlite:///{data_directory() / 'feedback.sqlite3'}"


def retention_days() -> int | None:
    """``$NPCNN_FEEDBACK_RETENTION_DAYS`` (default 365); ``None`` when it is 0: keep forever."""
    text = os.environ.get("NPCNN_FEEDBACK_RETENTION_DAYS", "").strip()
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(text)
    except ValueError:
        raise ConfigError(
            f"NPCNN_FEEDBACK_RETENTION_DAYS must be a whole number, got {text!r}"
        ) from None
    if days < 0:
        raise ConfigError(f"NPCNN_FEEDBACK_RETENTION_DAYS must be >= 0, got {days}")
    return days or None


# ------------------------------------------------------------------------- one correction
@dataclass(frozen=True)
class Correction:
    """What the model saw and what the user says it is.

    ``image``: the model's input, (28, 28) - or (1, 28, 28), (1, 1, 28, 28) - uint8 0..255 or
    float in [0, 1]; ``label``: 0-9 or ``"none"`` (not a digit); ``predicted``: the model's answer
    (0-9, or ``"none"`` for a model that has a not-a-digit class); ``confidence``: its probability
    in [0, 1]; ``model_version``: which model answered; ``upload``: the original bytes (optional).
    """

    image: Any
    label: int | str
    predicted: int | str
    confidence: float
    model_version: str
    upload: bytes | None = None


@dataclass(frozen=True)
class StoredCorrection:
    """A correction as stored: ``image`` uint8 (28, 28), ``label``/``predicted`` strings from
    ``LABELS``, ``created`` an aware UTC datetime, ``upload_bytes`` the upload's size (0: none);
    ``upload`` itself is ``None`` unless asked for."""

    id: int
    created: datetime
    label: str
    predicted: str
    confidence: float
    model_version: str
    image: np.ndarray
    upload_bytes: int
    upload: bytes | None = None


def normalise_label(value: object, what: str = "label") -> str:
    """0-9 (int or text) or ``"none"`` -> the stored text; anything else -> ``FeedbackError``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= 9:
        return str(int(value))
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return value.strip().lower()
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    raise FeedbackError(f"{what} must be a digit 0-9 or 'none' (not a digit), got {shown}")


def model_input_bytes(image: Any) -> bytes:
    """The 28x28 model input as 784 uint8 bytes (floats in [0, 1] are scaled by 255)."""
    try:
        array = np.asarray(image)
    except (TypeError, ValueError) as error:
        raise FeedbackError(f"image is not an array: {error}") from None
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]  # (1, 1, 28, 28) or (1, 28, 28) -> (28, 28)
    if array.shape != (28, 28):
        raise FeedbackError(f"image must be the 28x28 model input, got shape {np.shape(image)}")
    if array.dtype == np.uint8:
        return array.tobytes()
    if array.dtype.kind not in "iuf":
        raise FeedbackError(f"image must hold numbers, got dtype {array.dtype}")
    values = array.astype(np.float64)
    if array.dtype.kind == "f":
        if not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise FeedbackError("a float image must hold finite values in [0, 1]")
        values = values * 255.0
    elif values.min() < 0 or values.max() > 255:
        raise FeedbackError("an integer image must hold values in 0..255")
    return np.rint(values).astype(np.uint8).tobytes()


def validate(correction: Correction, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """The stored columns of ``correction``, or ``FeedbackError`` naming the first bad field."""
    confidence = correction.confidence
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number)):
        raise FeedbackError(f"confidence must be a number in [0, 1], got {confidence!r}")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise FeedbackError(f"confidence must be in [0, 1], got {confidence!r}")
    version = correction.model_version
    if not isinstance(version, str) or not version.strip():
        raise FeedbackError("model_version must be a non-empty string")
    version = version.strip()
    if len(version) > MAX_MODEL_VERSION_CHARS or not version.isprintable():
        raise FeedbackError(
            f"model_version must be printable and at most {MAX_MODEL_VERSION_CHARS} characters"
        )
    upload = correction.upload
    if upload is not None:
        if not isinstance(upload, (bytes, bytearray, memoryview)):
            raise FeedbackError(f"upload must be bytes, got {type(upload).__name__}")
        upload = bytes(upload) or None
        if upload is not None and len(upload) > max_upload_bytes:
            raise UploadTooLarge(
                f"the upload is {len(upload):,} bytes; at most {max_upload_bytes:,} are kept"
            )
    return {
        "label": normalise_label(correction.label),
        "predicted": normalise_label(correction.predicted, "predicted"),
        "confidence": float(confidence),
        "model_version": version,
        "image": model_input_bytes(correction.image),
        "upload": upload,
    }


# ------------------------------------------------------------------------------- the schema
metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied", sa.DateTime, nullable=False),
)

_LABEL_LIST = ", ".join(f"'{label}'" for label in LABELS)
corrections = sa.Table(
    "corrections",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("created", sa.DateTime, nullable=False, index=True),  # UTC, without a zone
    sa.Column("label", sa.String(4), nullable=False),
    sa.Column("predicted", sa.String(4), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(MAX_MODEL_VERSION_CHARS), nullable=False),
    sa.Column("image", sa.LargeBinary, nullable=False),  # 784 bytes: uint8 (28, 28)
    sa.Column("upload", sa.LargeBinary, nullable=True),  # the original bytes, bounded
    sa.CheckConstraint(f"label IN ({_LABEL_LIST})", name="label_is_known"),
    sa.CheckConstraint(f"predicted IN ({_LABEL_LIST})", name="predicted_is_known"),
    sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_in_0_1"),
)


def _migrate_to_1(conn: sa.Connection) -> None:
    """Version 1: the corrections table."""
    metadata.create_all(conn, tables=[corrections])


# MIGRATIONS[v] takes a database at version v - 1 to version v; append, never edit.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _migrate_to_1}


# --------------------------------------------------------------------------------- the engine
def _utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored as naive UTC


def create_store_engine(url: str) -> sa.Engine:
    """An SQLAlchemy engine for ``url`` with this store's connection settings (see the module
    docstring); no connection is made yet.  ``ConfigError`` for a malformed URL or no driver."""
    try:
        parsed = sa.make_url(url)
    except sa_exc.ArgumentError as error:
        raise ConfigError(f"malformed database URL {url!r}: {error}") from None
    shown = parsed.render_as_string(hide_password=True)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sa.create_engine(parsed, **options)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as error:
        raise ConfigError(f"cannot use database URL {shown}: {error}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        sa.event.listen(engine, "connect", _postgres_session_settings)
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, synchronous=FULL, and our own BEGIN (``BEGIN IMMEDIATE`` for writes).

    Python's sqlite3 module would otherwise start transactions itself, lazily, only before a
    write; SQLAlchemy's documented recipe hands that job back to us.
    """

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGINs from the sqlite3 module
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _postgres_session_settings(dbapi_connection: Any, _record: Any) -> None:
    """A commit is acknowledged only once it is durable, whatever the server's default."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO on")
    dbapi_connection.commit()


_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.InternalError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
    OSError,
)


# ---------------------------------------------------------------------------------- the store
class FeedbackStore:
    """The corrections database.  Thread-safe; one per process is enough.

    Creating a store connects to nothing: the first call that needs the database connects and
    creates or migrates the schema, so an app starts even while its database is down (and its
    feedback route answers 503 until the database is back).
    """

    def __init__(self, url: str | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.url = database_url(url)
        self.engine = create_store_engine(self.url)
        self.max_upload_bytes = max_upload_bytes
        self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"FeedbackStore({self.shown_url!r})"

    @property
    def shown_url(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every pooled connection (the store reconnects if used again)."""
        self.engine.dispose()

    # -------------------------------------------------------------- errors and the schema
    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        reason_text = reason[0] if reason else type(error).__name__
        return StoreUnavailable(f"the corrections database ({self.shown_url}) is unavailable: "
                                f"{reason_text}")  # fmt: skip

    def _prepare_sqlite_folder(self) -> None:
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    def ensure_schema(self) -> int:
        """Create or migrate the schema to ``SCHEMA_VERSION``; idempotent, safe to race.

        Returns the version.  ``StoreUnavailable`` if the database cannot be reached, or holds a
        newer schema than this code knows.
        """
        if self._schema_ready:  # no Python lock: the database's own lock makes races safe,
            return SCHEMA_VERSION  # and threads never queue behind one connection time-out
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                self._prepare_sqlite_folder()
                with self._writer.begin() as conn:
                    version = self._migrate(conn)
                break
            except _UNAVAILABLE as error:
                if not (self._sqlite_locked(error) and time.monotonic() < deadline):
                    raise self._unavailable(error) from error
                time.sleep(0.05)  # nothing was written: the transaction rolled back; try again
        self._schema_ready = True
        return version

    def _sqlite_locked(self, error: BaseException) -> bool:
        """Whether ``error`` is SQLite's "database is locked" outside its busy handler.

        SQLite can answer "busy" at once instead of waiting its time-out: we saw it once in 450
        starts of 8 stores at once on a new database file, on a loaded machine (the race test in
        ``tests/digits/test_feedback.py``), without learning which statement it was.  Creating the
        schema is one idempotent transaction, so ``ensure_schema`` simply runs it again.
        """
        return self.dialect == "sqlite" and "database is locked" in str(error)

    def _migrate(self, conn: sa.Connection) -> int:
        """Inside one write transaction: take the schema lock, then apply missing migrations."""
        if self.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
        metadata.create_all(conn, tables=[schema_version])
        current = conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"the corrections database has schema version {current}, newer than this code's "
                f"{SCHEMA_VERSION}: upgrade npcnn"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
            conn.execute(schema_version.insert().values(version=version, applied=_utc_now()))
        return SCHEMA_VERSION

    def schema_versions(self) -> list[int]:
        """Every applied migration, in order (the rows of ``schema_version``)."""
        query = sa.select(schema_version.c.version).order_by(schema_version.c.version)
        return [int(v) for v in self._read(lambda conn: conn.scalars(query).all())]

    def _read(self, query: Callable[[sa.Connection], Any]) -> Any:
        """Run ``query(conn)`` in a read transaction; database faults -> ``StoreUnavailable``."""
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                return query(conn)
        except _UNAVAILABLE as error:
            raise self._unavailable(error) from error

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers (for a readiness probe)."""
        self._read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar_one())

    # -------------------------------------------------------------------------- writing
    def add(self, correction: Correction, created: datetime | None = None) -> int:
        """Store ``correction``; its id, returned only once the transaction has committed.

        Validates everything first (``FeedbackError``, nothing written).  ``created`` (aware or
        naive UTC) is for imports and tests; by default, now.
        """
        row = validate(correction, self.max_upload_bytes)
        row["created"] = _as_naive_utc(created) if created is not None else _utc_now()
        self.ensure_schema()
        try:
            with self._writer.begin() as conn:
                row_id = conn.execute(corrections.insert().values(**row)).inserted_primary_key[0]
        except _UNAVAILABLE as error:  # includes a failed COMMIT: then nothing is acknowledged
            raise self._unavailable(error) from error
        return int(row_id)

    def delete(self, row_id: int) -> bool:
        """Delete the correction ``row_id`` (an undo); whether it existed.  Committed on return."""
        if isinstance(row_id, bool) or not isinstance(row_id, (int, np.integer)):
            raise FeedbackError(f"a correction id is a whole number, got {row_id!r}")
        self.ensure_schema()
        try:
            with self._writer.begin() as conn:
                deleted = conn.execute(corrections.delete().where(corrections.c.id == int(row_id)))
                return deleted.rowcount > 0
        except _UNAVAILABLE as error:
            raise self._unavailable(error) from error

    def prune(self, days: float | None = None) -> int:
        """Delete corrections older than ``days`` (default: ``retention_days()``); how many.

        With the retention setting at 0 (keep forever) and no ``days``, deletes nothing.
        """
        if days is None:
            days = retention_days()
            if days is None:
                return 0
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not days > 0:
            raise ConfigError(f"days must be a positive number, got {days!r}")
        cutoff = _utc_now() - timedelta(days=days)
        self.ensure_schema()
        try:
            with self._writer.begin() as conn:
                return conn.execute(
                    corrections.delete().where(corrections.c.created < cutoff)
                ).rowcount
        except _UNAVAILABLE as error:
            raise self._unavailable(error) from error

    # -------------------------------------------------------------------------- reading
    def count(self) -> int:
        """How many corrections are stored."""
        query = sa.select(sa.func.count()).select_from(corrections)
        return int(self._read(lambda conn: conn.scalar(query)))

    def iter_rows(self, with_upload: bool = False, batch: int = 500) -> Iterator[StoredCorrection]:
        """Every correction, oldest id first, read in batches of ``batch`` (keyset pagination:
        each batch is its own short transaction, so a long export never blocks the writers)."""
        columns = [c for c in corrections.c if with_upload or c.name != "upload"]
        columns.append(sa.func.coalesce(sa.func.length(corrections.c.upload), 0).label("size"))
        last = 0
        while True:
            query = (sa.select(*columns).where(corrections.c.id > last)
                     .order_by(corrections.c.id).limit(batch))  # fmt: skip
            rows = self._read(lambda conn, q=query: conn.execute(q).mappings().all())
            for row in rows:
                yield _stored(row)
            if len(rows) < batch:
                return
            last = rows[-1]["id"]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every correction as arrays, for training: ids int64 (N,), model inputs uint8
        (N, 28, 28), labels (N,) strings from ``LABELS``."""
        rows = list(self.iter_rows())
        ids = np.array([r.id for r in rows], dtype=np.int64)
        images = np.stack([r.image for r in rows]) if rows else np.zeros((0, 28, 28), np.uint8)
        return ids, images, np.array([r.label for r in rows], dtype="<U4")

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_label": {label: n} (all of LABELS), "by_model_version": {v: n},
        "first", "last"}`` (the oldest and newest creation times, ISO 8601 UTC, or None)."""

        def query(conn: sa.Connection) -> dict[str, Any]:
            count = sa.func.count()
            by_label = dict(conn.execute(sa.select(corrections.c.label, count)
                                         .group_by(corrections.c.label)).all())  # fmt: skip
            by_version = conn.execute(
                sa.select(corrections.c.model_version, count)
                .group_by(corrections.c.model_version)
                .order_by(count.desc(), corrections.c.model_version)
            ).all()
            first, last = conn.execute(
                sa.select(sa.func.min(corrections.c.created), sa.func.max(corrections.c.created))
            ).one()
            return {
                "total": sum(by_label.values()),
                "by_label": {label: by_label.get(label, 0) for label in LABELS},
                "by_model_version": dict(by_version),
                "first": _iso(first) if first else None,
                "last": _iso(last) if last else None,
            }

        return self._read(query)

    def export(self, out_dir: str | os.PathLike) -> int:
        """Write ``out_dir/labels.csv`` and ``out_dir/images/<id>.png`` (the 28x28 model input,
        8-bit grey) for every correction; the number of rows.  The CSV's columns are
        ``EXPORT_COLUMNS``; it is written last, atomically, and lists only images written."""
        from PIL import Image

        out = Path(out_dir)
        (out / "images").mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="labels.", suffix=".csv.tmp", dir=out)
        count = 0
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=EXPORT_COLUMNS)
                writer.writeheader()
                for row in self.iter_rows():
                    file = f"images/{row.id:08d}.png"
                    Image.fromarray(row.image).save(out / file)
                    writer.writerow(_csv_row(row, file))
                    count += 1
            os.chmod(tmp, 0o644)  # mkstemp makes it private; an export is an ordinary file
            os.replace(tmp, out / "labels.csv")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return count


EXPORT_COLUMNS = ["id", "file", "label", "predicted", "confidence", "model_version", "created",
                  "upload_bytes"]  # fmt: skip


def _as_naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def _stored(row: Any) -> StoredCorrection:
    image = np.frombuffer(bytes(row["image"]), dtype=np.uint8).reshape(28, 28)
    upload = row.get("upload")
    return StoredCorrection(
        id=int(row["id"]),
        created=row["created"].replace(tzinfo=timezone.utc),
        label=row["label"],
        predicted=row["predicted"],
        confidence=float(row["confidence"]),
        model_version=row["model_version"],
        image=image,
        upload_bytes=int(row["size"]),
        upload=bytes(upload) if upload is not None else None,
    )


def _csv_row(row: StoredCorrection, file: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "file": file,
        "label": row.label,
        "predicted": row.predicted,
        "confidence": f"{row.confidence:.6f}",
        "model_version": row.model_version,
        "created": _iso(row.created),
        "upload_bytes": row.upload_bytes,
    }


def is_held_out(ids: np.ndarray, fraction: float) -> np.ndarray:
    """Which corrections are held out for evaluation: a fixed ``fraction`` of ids, chosen by a
    hash of each id alone, so a correction once held out stays held out as the store grows (a
    later fine-tuning never trains on what an earlier one was judged on)."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"the held-out fraction must be in [0, 1), got {fraction}")
    hashed = (np.asarray(ids).astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return hashed.astype(np.float64) / 2.0**32 < fraction  # Knuth's multiplicative hash


# ------------------------------------------------------------------------- the rate limiter
class RateLimiter:
    """A token bucket per client key, in memory: ``burst`` requests at once, then one every
    ``60 / per_minute`` seconds.  Thread-safe; remembers at most ``max_clients`` keys (the least
    recently seen are forgotten, which only makes the limiter more lenient).

    The key is opaque to this class (the app decides what identifies a client); it is never
    stored anywhere but in this process's memory.
    """

    def __init__(
        self,
        per_minute: float = 30.0,
        burst: int = 10,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (per_minute > 0 and burst >= 1 and max_clients >= 1):
            raise ConfigError("need per_minute > 0, burst >= 1 and max_clients >= 1")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: tokens, time
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if the request may go ahead, else the seconds to wait
        before it may (nothing is taken then; send them as Retry-After)."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait

    def allow(self, key: str) -> bool:
        """Whether a request from ``key`` may go ahead now (a token is taken if so)."""
        return self.check(key) == 0.0


# ------------------------------------------------------------------------- the command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=argparse.SUPPRESS,
                     help="SQLAlchemy database URL (default: $NPCNN_DATABASE_URL, else the SQLite "
                     "file in the data directory)")  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="python -m npcnn.digits.feedback", parents=[url],
        description="Export, count and prune the users' corrections.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    export = commands.add_parser("export", parents=[url], help="write labels.csv and the PNGs")
    export.add_argument("--out", required=True, help="the folder to write into")
    commands.add_parser("stats", parents=[url], help="counts by label and by model version")
    prune = commands.add_parser("prune", parents=[url], help="delete old corrections")
    prune.add_argument("--days", type=_positive_number, default=None,
                       help="older than this many days (default: $NPCNN_FEEDBACK_RETENTION_DAYS, "
                       f"else {DEFAULT_RETENTION_DAYS})")  # fmt: skip
    return parser.parse_args(argv)


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of days, got {text}")
    return value


def print_stats(stats: dict[str, Any], where: str) -> None:
    print(f"{stats['total']} corrections in {where}")
    if stats["total"]:
        print(f"from {stats['first']} to {stats['last']}")
    print("by label:")
    for label, n in stats["by_label"].items():
        print(f"  {label:<6} {n:>8}")
    print("by model version:")
    for version, n in stats["by_model_version"].items():
        print(f"  {version:<40} {n:>8}")


def run_command(args: argparse.Namespace) -> int:
    """Carry out one command; errors propagate to ``main``."""
    with FeedbackStore(getattr(args, "url", None)) as store:
        if args.command == "export":
            n = store.export(args.out)
            print(f"exported {n} corrections to {Path(args.out) / 'labels.csv'}")
        elif args.command == "stats":
            print_stats(store.stats(), store.shown_url)
        elif args.command == "prune":
            days = args.days if args.days is not None else retention_days()
            if days is None:
                print("NPCNN_FEEDBACK_RETENTION_DAYS=0: corrections are kept forever; none deleted")
                return 0
            print(f"deleted {store.prune(days)} corrections older than {days:g} days")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run_command(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (StoreUnavailable, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
