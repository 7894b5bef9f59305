"""The state store: one SQLite file holding runs, node attempts and the audit trail.

- One connection per process, opened with ``isolation_level=None``: every single statement
  commits on its own, multi-statement changes use an explicit ``BEGIN IMMEDIATE``.
- WAL journal with ``synchronous=NORMAL``: a commit survives the process being killed
  (SIGKILL included); only a power loss may lose the last commits.
- The schema version lives in ``PRAGMA user_version``; ``MIGRATIONS[i]`` upgrades a database
  from version ``i`` to ``i + 1`` and runs inside a transaction.
- ``lock_run`` guarantees that a single process drives a run at a time (``flock`` on a file
  beside the database; the kernel drops it when the process dies).
- The lock file also says which commands its holder started: ``RunLock.record_process`` appends
  ``attempt ID PGID START`` (one ``pwrite``, no transaction: it survives a ``kill -9`` like a
  commit, at a quarter of the cost of one, on the path of every step). The records move into the
  attempts' ``pgid`` and ``proc_start`` when the lock is released or next taken (a runner that
  was killed), for the attempts still running or interrupted; until then ``attempts`` and
  ``final_attempts`` read them from the file.

Timestamps are ISO-8601 UTC strings with milliseconds and a trailing ``Z`` (``now_iso()``).
Rows come out as plain dicts. ``runs.variables`` and ``attempts.output`` are stored as JSON and
come out decoded; ``runs.plan`` is kept and returned as the exact plan JSON text.

Standard library only: this module goes into bundles (CPython 3.9-3.13).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import glob
import json
import math
import os
import sqlite3
import threading
import time

TYPE_CHECKING = False  # typing is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar, overload

    from .secrets import Masker

    _Method = TypeVar("_Method", bound=Callable[..., Any])
    _Row = TypeVar("_Row", bound="dict[str, Any] | None")  # a row, or None where a query found none
    # a `before_migrate` callback: (database path, the schema version it has) -> anything
    _BeforeMigrate = Callable[[str, int], object]

MEMORY = ":memory:"  # Store(MEMORY): a database in memory, written to no file

RUN_STATUSES = ("running", "succeeded", "failed", "aborted", "waiting")
RUN_TRIGGERS = ("run", "resume")
ATTEMPT_STATUSES = ("running", "succeeded", "failed", "skipped", "interrupted")

# Fields finish_attempt() accepts besides the status.
ATTEMPT_FIELDS = (
    "exit_code",
    "stdout",
    "stderr",
    "stdout_truncated",
    "stderr_truncated",
    "output",
    "error",
    "skip_reason",
    "decision",
    "decided_by",
)

_FLAGS = frozenset(name for name in ATTEMPT_FIELDS if name.endswith("_truncated"))
_FINISH_SQL: dict[tuple[str, ...], str] = {}  # finish_attempt's statement per set of fields given

# Seconds between two ISO timestamps, rounded to the millisecond (SQLite accepts the 'Z').
_SECONDS_BETWEEN = "round((julianday({end}) - julianday({start})) * 86400.0, 3)"


from .errors import LockedError, StateError, database_error  # noqa: E402  (re-exported)


_last_second = [(-1, "")]  # (the last whole second formatted by now_iso, its text), replaced whole


def now_iso() -> str:
    """The current UTC time as ``2026-11-29T04:18:05.123Z``."""
    now = time.time()
    seconds = int(now)
    millis = int((now - seconds) * 1000)
    last = _last_second[0]
    if last[0] != seconds:  # steps come many a second: format the date and time once
        last = _last_second[0] = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return "%s.%03dZ" % (last[1], millis)


@functools.lru_cache(maxsize=None)
def current_user() -> str:
    """The person running this process, as the operating system knows them: the passwd name of
    the real uid. Behind sudo (real uid 0, a `sudo` process among the ancestors, SUDO_USER and
    SUDO_UID naming the same passwd entry), the login that ran sudo. Never LOGNAME, USER or a
    flag: those are anyone's to set. "uid1234" when the uid has no passwd entry (containers)."""
    import pwd

    uid = os.getuid()
    if uid == 0:
        behind = _sudo_user()
        if behind:
            return behind
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid%d" % uid


def _sudo_user() -> str | None:
    """The login that ran sudo, when this process (real uid 0) was started by sudo; else None."""
    import pwd

    name, uid = os.environ.get("SUDO_USER"), os.environ.get("SUDO_UID", "")
    if not name or not uid.isdigit() or int(uid) == 0:
        return None
    try:
        if pwd.getpwnam(name).pw_uid != int(uid):
            return None
    except KeyError:
        return None
    pid = os.getppid()
    for _ in range(32):  # sudo -> sh -> launcher -> python: a few ancestors up at most
        if pid <= 1:
            return None
        try:
            with open("/proc/%d/stat" % pid, "rb") as handle:
                stat = handle.read()
        except OSError:
            return None
        comm = stat[stat.find(b"(") + 1 : stat.rfind(b")")]
        if comm == b"sudo":
            return name
        pid = int(stat[stat.rfind(b")") + 2 :].split()[1])
    return None


def current_host() -> str:
    return os.uname().nodename


def whoami() -> str:
    """``user@host``, the form ``decided_by`` and event ``who`` use."""
    return "%s@%s" % (current_user(), current_host())


# --- schema ------------------------------------------------------------------------------


def _migrate_to_1(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            source TEXT,
            plan_hash TEXT,
            plan TEXT,
            variables TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'running',
            "trigger" TEXT NOT NULL DEFAULT 'run',
            host TEXT,
            "user" TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            exit_code INTEGER
        )
        """
    )
    db.execute("CREATE INDEX runs_title ON runs (title, id)")
    db.execute("CREATE INDEX runs_source ON runs (source, id)")
    db.execute(
        """
        CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            skip_reason TEXT,
            decision TEXT,
            decided_by TEXT,
            note TEXT,
            exit_code INTEGER,
            stdout TEXT,
            stderr TEXT,
            stdout_truncated INTEGER NOT NULL DEFAULT 0,
            stderr_truncated INTEGER NOT NULL DEFAULT 0,
            output TEXT,
            error TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            duration REAL
        )
        """
    )
    db.execute("CREATE INDEX attempts_run_node ON attempts (run_id, node_id, id)")
    db.execute("CREATE INDEX attempts_running ON attempts (run_id) WHERE status = 'running'")
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            node_id TEXT,
            at TEXT NOT NULL,
            who TEXT,
            kind TEXT NOT NULL,
            detail TEXT
        )
        """
    )
    db.execute("CREATE INDEX events_run ON events (run_id, id)")
    db.execute("CREATE INDEX events_kind ON events (kind, run_id)")


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Each attempt of a Command records its process group and the start time of the group's
    leader (clock ticks since boot, /proc/PID/stat field 22): after a crashed runner, `resume`
    and `show` can tell whether that command is still alive (and not a reused pid)."""
    db.execute("ALTER TABLE attempts ADD COLUMN pgid INTEGER")
    db.execute("ALTER TABLE attempts ADD COLUMN proc_start INTEGER")


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """Runs belong to a runbook: its identity (`[runbook] id`, or one derived from the title
    as written, the author and created_at) survives title collisions, file moves and edits;
    statistics, `show NAME` and `resume` use it. Older runs have none (grouped by title)."""
    db.execute("ALTER TABLE runs ADD COLUMN runbook_id TEXT")
    db.execute("CREATE INDEX runs_runbook ON runs (runbook_id, id)")


def _migrate_to_4(db: sqlite3.Connection) -> None:
    """Approval decisions, one row each: who (user@host; behind sudo, the login that ran it),
    how (terminal, flag, auto-approve, out-of-band, signed), for signed ones the principal and
    the key's fingerprint, a note, and whether a step has used it already."""
    db.execute(
        """
        CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            who TEXT NOT NULL,
            how TEXT NOT NULL,
            principal TEXT,
            fingerprint TEXT,
            note TEXT,
            at TEXT NOT NULL,
            used INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX approvals_node ON approvals (run_id, node_id)")


_ATTEMPT_COLUMNS = (
    "run_id, node_id, attempt, status, skip_reason, decision, decided_by, note, exit_code, stdout, stderr, "
    "stdout_truncated, stderr_truncated, output, error, started_at, ended_at, duration, pgid, proc_start"
)


def _migrate_to_5(db: sqlite3.Connection) -> None:
    """Fewer pages written per step (an attempt is written three times: before its command
    starts, its process group, its result): attempt ids come from the rowid alone, not
    AUTOINCREMENT, whose counter row was rewritten at every insert (runs are never deleted,
    so ids still only grow), and the partial index of running attempts, rewritten at every
    start and end, is gone (its queries go by run, which attempts_run_node covers). Existing
    attempts keep their ids."""
    db.execute("DROP INDEX attempts_running")
    db.execute(
        """
        CREATE TABLE attempts_v5 (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            node_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            status TEXT NOT NULL,
            skip_reason TEXT,
            decision TEXT,
            decided_by TEXT,
            note TEXT,
            exit_code INTEGER,
            stdout TEXT,
            stderr TEXT,
            stdout_truncated INTEGER NOT NULL DEFAULT 0,
            stderr_truncated INTEGER NOT NULL DEFAULT 0,
            output TEXT,
            error TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            duration REAL,
            pgid INTEGER,
            proc_start INTEGER
        )
        """
    )
    db.execute("INSERT INTO attempts_v5 (id, %s) SELECT id, %s FROM attempts ORDER BY id" % (_ATTEMPT_COLUMNS, _ATTEMPT_COLUMNS))
    db.execute("DROP TABLE attempts")
    db.execute("ALTER TABLE attempts_v5 RENAME TO attempts")
    db.execute("CREATE INDEX attempts_run_node ON attempts (run_id, node_id, id)")
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'attempts'")


def _migrate_to_6(db: sqlite3.Connection) -> None:
    """Approvals bind what they approve (docs/architecture.md, "Approvals"):
    - every run gets a random UID (128 bits, hex), what a signed approval names: run ids restart
      at 1 in every database, and every host of a fleet has a run 1;
    - `origin`: the fleet rollout that started the run and the host name it gave it (JSON);
    - `approval_signers`: the allowed signers of the bundle that started the run, when it
      accepts only signed approvals for steps with a policy; every later tool honours them;
    - `software`: the Playbook that started the run (its version, a bundle's sha256);
    - an approval keeps the signed document it was recorded from (`signature`), checked again
      when it is used, and `voided` says why it no longer counts (a replan changed its question
      or what it gates)."""
    db.execute("ALTER TABLE runs ADD COLUMN uid TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN origin TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN approval_signers TEXT")
    db.execute("ALTER TABLE runs ADD COLUMN software TEXT")
    db.execute("UPDATE runs SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL")
    db.execute("CREATE UNIQUE INDEX runs_uid ON runs (uid)")
    db.execute("ALTER TABLE approvals ADD COLUMN signature TEXT")
    db.execute("ALTER TABLE approvals ADD COLUMN voided TEXT")


# MIGRATIONS[i] takes a database from schema version i to i + 1. Append, never edit.
MIGRATIONS = [_migrate_to_1, _migrate_to_2, _migrate_to_3, _migrate_to_4, _migrate_to_5, _migrate_to_6]

# The workflow a run counts towards in statistics: its runbook, or its title for older runs.
_WORKFLOW = "COALESCE(r.runbook_id, r.title)"


# --- helpers -----------------------------------------------------------------------------


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row)}


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _from_json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _run_row(row: _Row) -> _Row:
    if row is not None and "variables" in row:
        row["variables"] = _from_json(row["variables"]) or {}
    if row is not None and row.get("origin") is not None:
        row["origin"] = _from_json(row["origin"])
    return row


def _attempt_row(row: dict[str, Any]) -> dict[str, Any]:
    row["output"] = _from_json(row["output"])
    return row


def _location_error(path: str, reason: str) -> StateError:
    return StateError(
        "cannot use the state database %s: %s; choose a writable location with "
        "--state-path or PLAYBOOK_DB_PATH" % (path, reason)
    )


def _not_ours(path: str, reason: str) -> StateError:
    return StateError(
        "%s is not a Playbook state database (%s); point --state-path or PLAYBOOK_DB_PATH "
        "elsewhere" % (path, reason)
    )


if TYPE_CHECKING:  # the two ways to use it; the store's methods keep their signatures

    @overload
    def _guarded(method: _Method) -> _Method: ...

    @overload
    def _guarded(method: None = None, unmasked: tuple[str, ...] = ()) -> Callable[[_Method], _Method]: ...


def _guarded(method: Callable[..., Any] | None = None, unmasked: tuple[str, ...] = ()) -> Any:
    """Serialise calls from threads, mask secrets in every text written (except the arguments
    named in `unmasked`), and turn SQLite errors into StateError (with the cure)."""
    if method is None:
        return functools.partial(_guarded, unmasked=unmasked)
    names = method.__code__.co_varnames[1 : method.__code__.co_argcount]
    keep = {names.index(name) for name in unmasked}

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._mutex:
            if self._db is None:
                raise StateError("the state database %s is closed" % self.path)
            mask = self._mask
            if mask:
                args = tuple(a if i in keep else mask.value(a) for i, a in enumerate(args))
                kwargs = {k: v if k in unmasked else mask.value(v) for k, v in kwargs.items()}
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise database_error(self.path, e) from None

    return wrapper


# --- the store ---------------------------------------------------------------------------


class Store:
    """The SQLite state store. ``Store(path, before_migrate=None, timeout=None)``.

    ``before_migrate(path, from_version)`` is called before an existing database with an
    older schema is migrated (a chance to back it up); never for a new database.
    ``timeout`` is how many seconds a statement waits for another process's lock (SQLite's
    busy timeout; [database] timeout in the configuration); 5 when not given.
    """

    def __init__(
        self, path: str | os.PathLike[str], before_migrate: _BeforeMigrate | None = None, timeout: float | None = None
    ) -> None:
        # MEMORY (":memory:"): a database in this process's memory that no file ever holds and
        # no other process sees (`playbook test` rehearses runs in one); it has no run locks
        memory = os.fspath(path) == MEMORY
        self.path = MEMORY if memory else os.path.abspath(os.path.expanduser(os.fspath(path)))
        self._mutex = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._mask: Masker | None = None
        parent = os.path.dirname(self.path)
        try:
            if not memory:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            if memory:
                pass  # no file to create or check
            elif not os.path.exists(self.path):
                # Command output may be sensitive: only the owner reads the database
                # (SQLite gives its -wal and -shm files the same mode).
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            elif os.path.isfile(self.path):
                with open(self.path, "rb") as f:
                    header = f.read(16)
                # SQLite would silently turn a short non-database file into a database.
                if header and header != b"SQLite format 3\x00":
                    raise _not_ours(self.path, "not an SQLite file")
        except OSError as e:
            raise _location_error(self.path, e.strerror or str(e)) from None
        try:
            busy_ms = 5000 if timeout is None else max(0, int(float(timeout) * 1000))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000.0)
            self._db.row_factory = _dict_row
            self._conn.execute("PRAGMA busy_timeout = %d" % busy_ms)
            self._conn.execute("PRAGMA foreign_keys = ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()["user_version"]
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(version, before_migrate)
        except sqlite3.DatabaseError as e:
            self.close()
            message = str(e)
            if "not a database" in message or "malformed" in message:
                raise _not_ours(self.path, message) from None
            if "unable to open" in message or "readonly" in message:
                raise _location_error(self.path, message) from None
            raise database_error(self.path, e) from None
        except BaseException:
            self.close()
            raise

    def _migrate(self, version: int, before_migrate: _BeforeMigrate | None) -> None:
        target = len(MIGRATIONS)
        if version > target:
            raise StateError(
                "the state database %s was written by a newer Playbook (schema version %d, "
                "this one knows up to %d); use that version or another --state-path"
                % (self.path, version, target)
            )
        if version == target:
            return
        if version > 0 and before_migrate is not None:
            before_migrate(self.path, version)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            version = self._conn.execute("PRAGMA user_version").fetchone()["user_version"]
            if version == 0 and self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' LIMIT 1"
            ).fetchone():
                raise _not_ours(self.path, "an SQLite database of another program")
            for number in range(version, target):
                MIGRATIONS[number](self._conn)
                self._conn.execute("PRAGMA user_version = %d" % (number + 1))
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateError("the state database %s is closed" % self.path)
        return self._db

    def set_mask(self, masker: Masker | None) -> None:
        """From now on every text written is masked by `masker` (secrets.Masker)."""
        self._mask = masker

    def close(self) -> None:
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _update(self, sql: str, params: Sequence[Any], what: str) -> None:
        if self._conn.execute(sql, params).rowcount == 0:
            raise StateError("state database %s has no %s" % (self.path, what))

    # --- runs ------------------------------------------------------------------------------

    @_guarded(unmasked=("plan_hash", "plan_json", "approval_signers"))
    def create_run(
        self,
        title: str,
        source: str | None,
        plan_hash: str,
        plan_json: str,
        variables: Mapping[str, Any],
        trigger: str = "run",
        host: str | None = None,
        user: str | None = None,
        runbook_id: str | None = None,
        origin: Mapping[str, Any] | None = None,
        approval_signers: str | None = None,
        software: str | None = None,
    ) -> int:
        """Record a new run (status 'running', a fresh random UID); returns its id.
        ``variables`` must already have secrets masked. ``host``/``user`` default to this
        machine and user. ``origin``: the fleet rollout that started it; ``approval_signers``:
        the allowed signers whose signatures alone approve its steps with a policy; ``software``:
        the Playbook that runs it (version, bundle sha256)."""
        import secrets

        if trigger not in RUN_TRIGGERS:
            raise ValueError("unknown run trigger %r" % (trigger,))
        if isinstance(plan_json, bytes):
            plan_json = plan_json.decode("utf-8")
        cursor = self._conn.execute(
            'INSERT INTO runs (title, source, plan_hash, plan, variables, status, "trigger", '
            'host, "user", started_at, runbook_id, uid, origin, approval_signers, software) '
            "VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                title,
                source,
                plan_hash,
                plan_json,
                _to_json(variables or {}),
                trigger,
                host if host is not None else current_host(),
                user if user is not None else current_user(),
                now_iso(),
                runbook_id,
                secrets.token_hex(16),
                _to_json(origin) if origin else None,
                approval_signers or None,
                software,
            ),
        )
        return int(cursor.lastrowid or 0)

    @_guarded
    def set_run_status(self, run_id: int, status: str, exit_code: int | None = None, ended: bool = True) -> None:
        """Set the run's status; ``ended`` stamps ended_at (otherwise it is cleared)."""
        if status not in RUN_STATUSES:
            raise ValueError("unknown run status %r" % (status,))
        self._update(
            "UPDATE runs SET status = ?, exit_code = ?, ended_at = ? WHERE id = ?",
            (status, exit_code, now_iso() if ended else None, run_id),
            "run %s" % run_id,
        )

    @_guarded(unmasked=("plan_hash", "plan_json"))
    def replan_run(self, run_id: int, plan_hash: str, plan_json: str, variables: Mapping[str, Any]) -> None:
        """The run continues with another plan of its runbook (resume --replan)."""
        self._update(
            "UPDATE runs SET plan_hash = ?, plan = ?, variables = ? WHERE id = ?",
            (plan_hash, plan_json, _to_json(variables or {}), run_id),
            "run %s" % run_id,
        )

    @_guarded
    def set_run_trigger(self, run_id: int, trigger: str) -> None:
        if trigger not in RUN_TRIGGERS:
            raise ValueError("unknown run trigger %r" % (trigger,))
        self._update(
            'UPDATE runs SET "trigger" = ? WHERE id = ?', (trigger, run_id), "run %s" % run_id
        )

    @_guarded
    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """The run, with ``status`` "interrupted" when it is recorded running but no process
        drives it any more (its runner died)."""
        return self._observed(_run_row(self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()))

    @_guarded
    def run_by_uid(self, uid: str) -> dict[str, Any] | None:
        """The run with this UID (see `get_run`), or None."""
        return self._observed(_run_row(self._conn.execute("SELECT * FROM runs WHERE uid = ?", (uid,)).fetchone()))

    def _observed(self, run: _Row) -> _Row:
        if run is not None and run["status"] == "running" and not self.driven(run["id"]):
            run["status"] = "interrupted"
        return run

    def _lock_path(self, run_id: int) -> str:
        return os.path.join(self.path + ".locks", "run-%s.lock" % run_id)

    def driven(self, run_id: int) -> bool:
        """Whether a process holds the run's lock right now (is driving it)."""
        path = self._lock_path(run_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False  # never locked: nobody drives it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops our shared lock at once
        return False

    @_guarded
    def runs(
        self, title: str | None = None, since: str | None = None, limit: int | None = None, workflow: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs newest first, without the (large) ``plan`` column; ``get_run`` has it.
        `workflow` selects the runs of one runbook (see `workflows`)."""
        sql = (
            'SELECT id, title, source, plan_hash, variables, status, "trigger", host, "user", '
            "started_at, ended_at, exit_code, runbook_id, uid, origin FROM runs r WHERE 1 = 1"
        )
        params: list[Any] = []
        if title is not None:
            sql += " AND title = ?"
            params.append(title)
        if workflow is not None:
            sql += " AND %s = ?" % _WORKFLOW
            params.append(workflow)
        if since is not None:
            sql += " AND started_at >= ?"
            params.append(since)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._observed(_run_row(row)) for row in self._conn.execute(sql, params)]

    @_guarded
    def workflows(self) -> list[dict[str, Any]]:
        """Every runbook with runs: {"workflow": identity (or title of older runs), "title": the
        latest run's title, "runs": n}, most recently run first."""
        return list(
            self._conn.execute(
                "SELECT w.workflow, w.runs, (SELECT title FROM runs WHERE id = w.last) AS title FROM "
                "(SELECT %s AS workflow, COUNT(*) AS runs, MAX(r.id) AS last FROM runs r GROUP BY workflow) w "
                "ORDER BY w.last DESC" % _WORKFLOW
            )
        )

    @_guarded
    def latest_run(
        self,
        source: str | None = None,
        title: str | None = None,
        statuses: Iterable[str] | None = ("failed", "aborted"),
        plan_hash: str | None = None,
        runbook_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The newest run matching source/title/plan hash and one of ``statuses`` (None: any)."""
        sql = "SELECT * FROM runs WHERE 1 = 1"
        params: list[Any] = []
        if plan_hash is not None:
            sql += " AND plan_hash = ?"
            params.append(plan_hash)
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        if title is not None:
            sql += " AND title = ?"
            params.append(title)
        if runbook_id is not None:
            sql += " AND runbook_id = ?"
            params.append(runbook_id)
        if statuses is not None:
            statuses = list(statuses)
            sql += " AND status IN (%s)" % ", ".join("?" * len(statuses))
            params.extend(statuses)
        sql += " ORDER BY id DESC LIMIT 1"
        return _run_row(self._conn.execute(sql, params).fetchone())

    # --- attempts --------------------------------------------------------------------------

    @_guarded(unmasked=("finished",))
    def start_attempt(self, run_id: int, node_id: str, attempt: int, finished: tuple | None = None) -> int:
        """Write a 'running' attempt row (committed on return); returns its id.

        ``finished`` is ``(attempt_id, status, fields, ended_at)`` of an attempt that has ended
        but is not written yet (see ``finish_attempt``): both go in one transaction, the end
        first. If that transaction fails nothing of it is written."""
        if finished is None:
            return self._insert_attempt(run_id, node_id, attempt)
        attempt_id, status, fields, ended = finished
        if self._mask:
            fields = {k: self._mask.value(v) for k, v in fields.items()}
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._finish_attempt(attempt_id, status, fields, ended)
            new_id = self._insert_attempt(run_id, node_id, attempt)
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        return new_id

    def _insert_attempt(self, run_id: int, node_id: str, attempt: int) -> int:
        cursor = self._conn.execute(
            "INSERT INTO attempts (run_id, node_id, attempt, status, started_at) "
            "VALUES (?, ?, ?, 'running', ?)",
            (run_id, node_id, attempt, now_iso()),
        )
        return int(cursor.lastrowid or 0)

    @_guarded
    def set_attempt_process(self, attempt_id: int, pgid: int, proc_start: int | None) -> None:
        """Record the process group of a started command (before it is waited for). A run's
        driver records them in its lock file instead (``RunLock.record_process``)."""
        self._update(
            "UPDATE attempts SET pgid = ?, proc_start = ? WHERE id = ?",
            (pgid, proc_start, attempt_id),
            "attempt %s" % attempt_id,
        )

    @_guarded(unmasked=("ended_at",))
    def finish_attempt(self, attempt_id: int, status: str, ended_at: str | None = None, **fields: Any) -> None:
        """End an attempt: status, ended_at (now unless given, as ``now_iso()`` writes it),
        duration and any of ``ATTEMPT_FIELDS``. ``output`` may be any JSON-able value (others
        are stored as their str())."""
        self._finish_attempt(attempt_id, status, fields, ended_at or now_iso())

    def _finish_attempt(self, attempt_id: int, status: str, fields: Mapping[str, Any], ended: str) -> None:
        if status not in ATTEMPT_STATUSES or status == "running":
            raise ValueError("cannot finish an attempt as %r" % (status,))
        names = tuple(sorted(fields))
        sql = _FINISH_SQL.get(names)
        if sql is None:
            for name in names:
                if name not in ATTEMPT_FIELDS:
                    raise TypeError("finish_attempt() got an unknown field %r" % (name,))
            sets = ["status = ?", "ended_at = ?"] + [name + " = ?" for name in names]
            sets.append("duration = " + _SECONDS_BETWEEN.format(end="?", start="started_at"))
            sql = _FINISH_SQL[names] = "UPDATE attempts SET %s WHERE id = ?" % ", ".join(sets)
        params: list[Any] = [status, ended]
        for name in names:
            value = fields[name]
            if name == "output":
                value = None if value is None else _to_json(value)
            elif name in _FLAGS:
                value = 1 if value else 0
            params.append(value)
        params.append(ended)
        params.append(attempt_id)
        self._update(sql, params, "attempt %s" % attempt_id)

    @_guarded
    def record_skip(
        self, run_id: int, node_id: str, reason: str, decision: str | None = None, decided_by: str | None = None
    ) -> int:
        """Record a finished 'skipped' attempt numbered after the node's last one."""
        now = now_iso()
        cursor = self._conn.execute(
            "INSERT INTO attempts (run_id, node_id, attempt, status, skip_reason, decision, "
            "decided_by, started_at, ended_at, duration) "
            "SELECT ?, ?, COALESCE(MAX(attempt), 0) + 1, 'skipped', ?, ?, ?, ?, ?, 0 "
            "FROM attempts WHERE run_id = ? AND node_id = ?",
            (run_id, node_id, reason, decision, decided_by, now, now, run_id, node_id),
        )
        return int(cursor.lastrowid or 0)

    @_guarded
    def set_attempt_decision(self, attempt_id: int, decision: str, decided_by: str | None) -> None:
        self._update(
            "UPDATE attempts SET decision = ?, decided_by = ? WHERE id = ?",
            (decision, decided_by, attempt_id),
            "attempt %s" % attempt_id,
        )

    @_guarded
    def mark_interrupted(self, run_id: int) -> list[str]:
        """Every 'running' attempt of the run becomes 'interrupted'; returns their node ids."""
        now = now_iso()
        self._conn.execute("BEGIN IMMEDIATE")
        rows = self._conn.execute(
            "SELECT node_id FROM attempts WHERE run_id = ? AND status = 'running' ORDER BY id",
            (run_id,),
        ).fetchall()
        self._conn.execute(
            "UPDATE attempts SET status = 'interrupted', ended_at = ?, duration = %s "
            "WHERE run_id = ? AND status = 'running'"
            % _SECONDS_BETWEEN.format(end="?", start="started_at"),
            (now, now, run_id),
        )
        self._conn.execute("COMMIT")
        return [row["node_id"] for row in rows]

    @_guarded
    def attempts(self, run_id: int, node_id: str | None = None) -> list[dict[str, Any]]:
        if node_id is None:
            cursor = self._conn.execute(
                "SELECT * FROM attempts WHERE run_id = ? ORDER BY id", (run_id,)
            )
        else:
            cursor = self._conn.execute(
                "SELECT * FROM attempts WHERE run_id = ? AND node_id = ? ORDER BY id",
                (run_id, node_id),
            )
        return self._with_processes(run_id, [_attempt_row(row) for row in cursor])

    @_guarded
    def final_attempts(self, run_id: int) -> dict[str, dict[str, Any]]:
        """``{node_id: latest attempt row}`` for every node of the run that has one."""
        cursor = self._conn.execute(
            "SELECT * FROM attempts WHERE id IN "
            "(SELECT MAX(id) FROM attempts WHERE run_id = ? GROUP BY node_id) ORDER BY id",
            (run_id,),
        )
        rows = self._with_processes(run_id, [_attempt_row(row) for row in cursor])
        return {row["node_id"]: row for row in rows}

    def _with_processes(self, run_id: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`rows` with the process of a running or interrupted attempt filled in from the run's
        lock file when it is not in the database yet (see the module docstring)."""
        if any(row["pgid"] is None and row["status"] in _LIVE for row in rows):
            records = _process_records(self._lock_path(run_id))
            for row in rows:
                if row["pgid"] is None and row["status"] in _LIVE and row["id"] in records:
                    row["pgid"], row["proc_start"] = records[row["id"]]
        return rows

    @_guarded(unmasked=("records",))
    def adopt_processes(self, run_id: int, records: Mapping[int, tuple[int, int | None]]) -> None:
        """Write `records` ({attempt id: (pgid, start ticks)}, from a lock file) into the run's
        attempts that are still running or interrupted and have no process yet."""
        if not records:
            return
        rows = self._conn.execute(
            "SELECT id FROM attempts WHERE run_id = ? AND pgid IS NULL AND status IN ('running', 'interrupted')",
            (run_id,),
        ).fetchall()
        todo = [records[row["id"]] + (row["id"],) for row in rows if row["id"] in records]
        if todo:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("UPDATE attempts SET pgid = ?, proc_start = ? WHERE id = ?", todo)
            self._conn.execute("COMMIT")

    @_guarded
    def attempt_numbers(self, run_id: int) -> dict[str, int]:
        """``{node_id: its highest attempt number}`` for every node of the run that has one
        (one query at the start of a session instead of one per step)."""
        cursor = self._conn.execute(
            "SELECT node_id, MAX(attempt) AS n FROM attempts WHERE run_id = ? GROUP BY node_id",
            (run_id,),
        )
        return {row["node_id"]: row["n"] for row in cursor}

    @_guarded
    def next_attempt_number(self, run_id: int, node_id: str) -> int:
        row = self._conn.execute(
            "SELECT COALESCE(MAX(attempt), 0) + 1 AS n FROM attempts "
            "WHERE run_id = ? AND node_id = ?",
            (run_id, node_id),
        ).fetchone()
        return row["n"]

    @_guarded
    def set_node_status(self, run_id: int, node_id: str, status: str, who: str, reason: str) -> int:
        """Operator ``set-status``: a new attempt row with that status (decision
        'set-status', the reason in ``note``, and in ``skip_reason`` when skipped) plus an
        audit event. Returns the attempt id."""
        if status not in ("succeeded", "failed", "skipped"):
            raise ValueError("a node can only be set to succeeded, failed or skipped")
        now = now_iso()
        self._conn.execute("BEGIN IMMEDIATE")
        if self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            self._conn.execute("ROLLBACK")
            raise StateError("state database %s has no run %s" % (self.path, run_id))
        cursor = self._conn.execute(
            "INSERT INTO attempts (run_id, node_id, attempt, status, skip_reason, decision, "
            "decided_by, note, started_at, ended_at, duration) "
            "SELECT ?, ?, COALESCE(MAX(attempt), 0) + 1, ?, ?, 'set-status', ?, ?, ?, ?, 0 "
            "FROM attempts WHERE run_id = ? AND node_id = ?",
            (
                run_id,
                node_id,
                status,
                reason if status == "skipped" else None,
                who,
                reason,
                now,
                now,
                run_id,
                node_id,
            ),
        )
        self._conn.execute(
            "INSERT INTO events (run_id, node_id, at, who, kind, detail) "
            "VALUES (?, ?, ?, ?, 'set-status', ?)",
            (run_id, node_id, now, who, "%s set to %s: %s" % (node_id, status, reason)),
        )
        self._conn.execute("COMMIT")
        return int(cursor.lastrowid or 0)

    # --- audit trail -----------------------------------------------------------------------

    @_guarded
    def add_event(
        self, run_id: int, kind: str, detail: str, who: str | None = None, node_id: str | None = None
    ) -> int:
        """Append to the audit trail; a non-string ``detail`` is stored as JSON."""
        if detail is not None and not isinstance(detail, str):
            detail = _to_json(detail)
        cursor = self._conn.execute(
            "INSERT INTO events (run_id, node_id, at, who, kind, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, node_id, now_iso(), who, kind, detail),
        )
        return int(cursor.lastrowid or 0)

    @_guarded(unmasked=("signature",))
    def add_approval(
        self,
        run_id: int,
        node_id: str,
        decision: str,
        who: str,
        how: str,
        principal: str | None = None,
        fingerprint: str | None = None,
        note: str | None = None,
        signature: str | None = None,
    ) -> int:
        """Record one person's decision on a step's question (not used by the step yet);
        `signature`: the signed document it was recorded from, kept to be checked again."""
        if decision not in ("approved", "rejected"):
            raise ValueError("unknown approval decision %r" % (decision,))
        cursor = self._conn.execute(
            "INSERT INTO approvals (run_id, node_id, decision, who, how, principal, fingerprint, note, at, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, node_id, decision, who, how, principal, fingerprint, note, now_iso(), signature),
        )
        return int(cursor.lastrowid or 0)

    @_guarded
    def approvals(self, run_id: int, node_id: str | None = None, unused: bool = False, used: bool = False) -> list[dict[str, Any]]:
        """Approval decisions of a run (of one step; `unused`: only those no step has used yet
        and no replan voided; `used`: only those a step has acted on)."""
        sql = "SELECT * FROM approvals WHERE run_id = ?"
        params: list[Any] = [run_id]
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        if unused:
            sql += " AND used = 0 AND voided IS NULL"
        if used:
            sql += " AND used = 1 AND voided IS NULL"
        return list(self._conn.execute(sql + " ORDER BY id", params))

    @_guarded
    def use_approvals(self, run_id: int, node_id: str) -> None:
        """The step has acted on its decisions: a later question needs new ones."""
        self._conn.execute(
            "UPDATE approvals SET used = 1 WHERE run_id = ? AND node_id = ? AND used = 0 AND voided IS NULL", (run_id, node_id)
        )

    @_guarded
    def void_approvals(self, run_id: int, node_id: str, why: str, ids: Iterable[int] | None = None) -> int:
        """The step's decisions (those of `ids` only, when given) no longer count (`why`: a replan
        changed what they approve, a signature does not verify); returns how many were voided."""
        sql = "UPDATE approvals SET voided = ? WHERE run_id = ? AND node_id = ? AND voided IS NULL"
        params: list[Any] = [why, run_id, node_id]
        if ids is not None:
            ids = [int(i) for i in ids]
            sql += " AND id IN (%s)" % ", ".join("?" * len(ids))
            params.extend(ids)
        return self._conn.execute(sql, params).rowcount

    @_guarded
    def events(self, run_id: int) -> list[dict[str, Any]]:
        return self._conn.execute(
            "SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,)
        ).fetchall()

    # --- statistics ------------------------------------------------------------------------

    @_guarded
    def stats(self, title: str | None = None, since: str | None = None, top: int = 5) -> dict[str, Any]:
        """Per workflow (a runbook's identity; the title for runs recorded before identities)::

            {workflow: {"title": latest title, "runs": n, "by_status": {status: n},
                     "median_duration": s, "p95_duration": s,   # finished runs, or None
                     "most_failing": [(node, failures)], "most_retried": [(node, retries)],
                     "slowest": [(node, mean seconds)], "approvals_by": {who: n}}}

        Retries count executions of a node beyond its first within a run (skips and
        set-status rows excluded); "slowest" averages succeeded/failed executions.
        """
        where = "WHERE 1 = 1"
        params: list[Any] = []
        if title is not None:  # a workflow: a runbook's identity, or the title of older runs
            where += " AND %s = ?" % _WORKFLOW
            params.append(title)
        if since is not None:
            where += " AND r.started_at >= ?"
            params.append(since)
        executed = (
            "a.status IN ('succeeded', 'failed', 'interrupted') "
            "AND (a.decision IS NULL OR a.decision != 'set-status')"
        )
        result: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            if name not in result:
                result[name] = {
                    "runs": 0,
                    "by_status": {},
                    "median_duration": None,
                    "p95_duration": None,
                    "most_failing": [],
                    "most_retried": [],
                    "slowest": [],
                    "approvals_by": {},
                }
            return result[name]

        def ranked(sql: str, key: str, value: Callable[[Any], Any] = lambda v: v) -> None:
            for row in self._conn.execute(sql, params):
                items = entry(row["title"])[key]
                if len(items) < top:
                    items.append((row["node_id"], value(row["n"])))

        for row in self._conn.execute(
            "SELECT " + _WORKFLOW + " AS title, r.status, COUNT(*) AS n FROM runs r %s "
            "GROUP BY title, r.status ORDER BY title, r.status" % where,
            params,
        ):
            stats = entry(row["title"])
            stats["runs"] += row["n"]
            stats["by_status"][row["status"]] = row["n"]
        # a run recorded running whose runner is gone is interrupted, as everywhere else
        for row in self._conn.execute(
            "SELECT " + _WORKFLOW + " AS title, r.id FROM runs r %s AND r.status = 'running'" % where, params
        ):
            if not self.driven(row["id"]):
                by_status = entry(row["title"])["by_status"]
                by_status["running"] -= 1
                if not by_status["running"]:
                    del by_status["running"]
                by_status["interrupted"] = by_status.get("interrupted", 0) + 1

        durations: dict[str, list] = {}
        for row in self._conn.execute(
            "SELECT " + _WORKFLOW + " AS title, %s AS d FROM runs r %s AND r.ended_at IS NOT NULL "
            "AND r.status != 'running' ORDER BY title, d"
            % (_SECONDS_BETWEEN.format(end="r.ended_at", start="r.started_at"), where),
            params,
        ):
            durations.setdefault(row["title"], []).append(row["d"])
        for name, values in durations.items():
            import statistics  # only for statistics: keeps `run` start-up light

            entry(name)["median_duration"] = statistics.median(values)
            entry(name)["p95_duration"] = values[max(0, math.ceil(0.95 * len(values)) - 1)]

        ranked(
            "SELECT " + _WORKFLOW + " AS title, a.node_id, COUNT(*) AS n FROM attempts a "
            "JOIN runs r ON r.id = a.run_id %s AND a.status = 'failed' "
            "GROUP BY title, a.node_id ORDER BY title, n DESC, a.node_id" % where,
            "most_failing",
        )
        ranked(
            "SELECT " + _WORKFLOW + " AS title, a.node_id, SUM(a.n - 1) AS n FROM "
            "(SELECT a.run_id, a.node_id, COUNT(*) AS n FROM attempts a WHERE %s "
            "GROUP BY a.run_id, a.node_id HAVING COUNT(*) > 1) a "
            "JOIN runs r ON r.id = a.run_id %s "
            "GROUP BY title, a.node_id ORDER BY title, n DESC, a.node_id" % (executed, where),
            "most_retried",
        )
        ranked(
            "SELECT " + _WORKFLOW + " AS title, a.node_id, AVG(a.duration) AS n FROM attempts a "
            "JOIN runs r ON r.id = a.run_id %s AND a.status IN ('succeeded', 'failed') "
            "AND (a.decision IS NULL OR a.decision != 'set-status') AND a.duration IS NOT NULL "
            "GROUP BY title, a.node_id ORDER BY title, n DESC, a.node_id" % where,
            "slowest",
            lambda v: round(v, 3),
        )
        for row in self._conn.execute(
            # approvals given (by a person, or by --auto-approve); not rejections or approvals
            # that were needed when no terminal was there to give them
            "SELECT " + _WORKFLOW + " AS title, e.who AS who, COUNT(*) AS n FROM events e "
            "JOIN runs r ON r.id = e.run_id %s AND e.kind = 'approval' AND e.who IS NOT NULL "
            "AND (e.detail LIKE '%%: approved: %%' OR e.detail LIKE '%%: auto-approved: %%') "
            "GROUP BY title, who ORDER BY title, n DESC, who" % where,
            params,
        ):
            entry(row["title"])["approvals_by"][row["who"]] = row["n"]
        titles = {w["workflow"]: w["title"] for w in self.workflows()}
        for name, stats in result.items():
            stats["title"] = titles.get(name, name)  # the latest title of the runbook's runs
        return result

    # --- locking ---------------------------------------------------------------------------

    def lock_run(self, run_id: int) -> RunLock:
        """Take the exclusive right to drive ``run_id``; raises LockedError if another
        process (or another lock in this process) holds it. Use as a context manager or
        call ``release()``. A MEMORY database is this process's alone: its lock is no file."""
        path = self._lock_path(run_id)
        if self.path == MEMORY:
            return RunLock(run_id, path, None, self, 0)
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise _location_error(path, e.strerror or str(e)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateError("cannot lock %s: %s" % (path, e.strerror)) from None
            raise LockedError(
                "run %s is being driven by another process%s; wait for it to finish or stop it"
                % (run_id, holder)
            ) from None
        try:  # the commands a runner that was killed had started
            self.adopt_processes(run_id, _process_records(path, fd))
        except BaseException:
            os.close(fd)  # the records stay for the next try
            raise
        holder_line = ("%d %s\n" % (os.getpid(), current_host())).encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            end = os.pwrite(fd, holder_line, 0)
        except OSError as e:  # a full disk: the lock is held, only the holder's name is missing
            if e.errno != errno.ENOSPC:
                os.close(fd)
                raise _location_error(path, e.strerror or str(e)) from None
            end = 0
        return RunLock(run_id, path, fd, self, end)


def _read_holder(fd: int) -> str:
    """`` (pid 1234 on host web1)`` from a lock file, or ``""`` if not written yet."""
    for _ in range(5):  # the holder writes right after locking: give it a moment
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        except OSError:
            return ""
        if len(text) >= 2 and text[0] != "attempt":
            return " (pid %s on host %s)" % (text[0], text[1])
        time.sleep(0.01)
    return ""


_LIVE = ("running", "interrupted")  # attempts whose command may still be running


def _process_records(path: str, fd: int | None = None) -> dict[int, tuple[int, int | None]]:
    """{attempt id: (pgid, start ticks or None)} of the ``attempt ID PGID START`` lines of a
    lock file (`fd`, else `path`); a line not ended yet (being written) is left out."""
    try:
        if fd is None:
            with open(path, "rb") as handle:
                data = handle.read()
        else:
            data = os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError:
        return {}
    records: dict[int, tuple[int, int | None]] = {}
    for line in data.split(b"\n")[:-1]:
        words = line.split()
        if len(words) == 4 and words[0] == b"attempt" and words[1].isdigit() and words[2].isdigit():
            start = int(words[3]) if words[3].isdigit() else None
            records[int(words[1])] = (int(words[2]), start)
    return records


class RunLock:
    """Held lock on a run; the kernel releases it if the process dies. The file names the
    holder on its first line and, after it, the commands the holder started."""

    def __init__(self, run_id: int, path: str, fd: int | None, store: Store, end: int) -> None:
        self.run_id = run_id
        self.path = path
        self._fd = fd
        self._store = store
        self._end = end  # where the next record goes
        self._append = threading.Lock()  # steps run in worker threads under --parallel

    def record_process(self, attempt_id: int, pgid: int, proc_start: int | None) -> None:
        """Record the process group of an attempt's command, which has just started: appended
        to the lock file (one ``pwrite``), or written to the database if that fails."""
        line = ("attempt %d %d %s\n" % (attempt_id, pgid, "-" if proc_start is None else proc_start)).encode()
        with self._append:
            try:
                if self._fd is not None and os.pwrite(self._fd, line, self._end) == len(line):
                    self._end += len(line)
                    return
            except OSError:  # a full disk: the database may still take it
                pass
        self._store.set_attempt_process(attempt_id, pgid, proc_start)

    def release(self) -> None:
        if self._fd is not None:
            try:
                # what may still run goes into the database
                self._store.adopt_processes(self.run_id, _process_records(self.path, self._fd))
                # Truncate first so a stale "pid host" is never reported for a free lock.
                os.ftruncate(self._fd, 0)
            except (OSError, StateError):
                pass  # the records stay in the file; the next lock_run moves them
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- a copy before a schema upgrade ------------------------------------------------------------
def copy_database(source: str, target: str, timeout: float = 5.0) -> None:
    """Copy the SQLite database `source` into the new file `target` (0600; a file or link already
    there is an error) with SQLite's backup API: consistent even with a WAL and other writers."""
    os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    con = sqlite3.connect(source, timeout=timeout)
    try:
        copy = sqlite3.connect(target)
        try:
            con.backup(copy)
        finally:
            copy.close()
    finally:
        con.close()


def backup_database(path: str, keep: int) -> str:
    """Copy the database to `<db>.bak-<UTC timestamp>` (sqlite3 backup API: consistent even
    with a WAL) and delete all but the newest `keep` copies. Returns the copy's path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = "%s.bak-%s" % (path, stamp)
    same_second = glob.glob(glob.escape(target) + "*")
    if same_second:  # several upgrades within a second: -2, -3, … (always after the others)
        target = "%s-%d" % (target, max(_backup_order(p)[1] for p in same_second) + 1)
    try:
        copy_database(path, target)
    except (OSError, sqlite3.Error) as exc:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise StateError(
            "cannot back up the state database %s before upgrading its schema (%s); free space or "
            "make its folder writable, or set [database] backup_enabled = false" % (path, exc)
        ) from None
    backups = sorted(glob.glob(glob.escape(path) + ".bak-*"), key=_backup_order)
    for old in backups[: max(0, len(backups) - max(1, int(keep)))]:
        try:
            os.unlink(old)
        except OSError:
            pass
    return target


def _backup_order(path: str) -> tuple[str, int]:
    stamp = path.rsplit(".bak-", 1)[-1]
    base, _, number = stamp.partition("Z")
    number = number.lstrip("-")
    return (base, int(number) if number.isdigit() else 1)


def backup_hook(keep: int) -> Callable[[str, int], None]:
    """A Store `before_migrate` callback that backs the database up first."""

    def before_migrate(path: str, from_version: int) -> None:
        backup_database(path, keep)

    return before_migrate
