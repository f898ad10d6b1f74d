"""Task sets in the run log: a name, and versions that never change once written.

A version lists its tasks by hash (`task_set_tasks` keeps each distinct task once), so every edit is a
new version and an old one stays readable as it was. What a task is, and whether it is valid, is the
experiments' business (agent.experiments.tasks): here a task is a JSON object with an `id`, stored with
its check kind. `sync_bundled` copies a bundled set in (its first version) and follows its file while
nobody has edited it. Write functions follow agent.log.writes: `fn(con, secrets, ...)`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import duckdb

from agent.log.errors import InvalidQuery, VersionConflict
from agent.log.mixin import StorePart
from agent.log.protocol import StoredTask
from agent.log.redact import scrub
from agent.log.rows import dicts, insert_sql, scalar
from agent.models import utcnow

__all__ = ["BUNDLED", "ORIGINS", "SOURCES", "StoredTask", "TaskSetLog", "add_version", "create_set", "get_set",
           "list_sets", "sync_bundled"]

Connection = duckdb.DuckDBPyConnection
Secrets = Sequence[str]
BUNDLED = "bundled"
SOURCES = (BUNDLED, "stored")
# What made a version: a bundled file copied in (or changed), a set created, its tasks replaced, one task
# added, edited or removed.
ORIGINS = (BUNDLED, "created", "replaced", "added", "edited", "removed")
_CHUNK = 500


def _rows(secrets: Secrets, tasks: Sequence[StoredTask]) -> tuple[list[str], dict[str, tuple[str, str | None, str]]]:
    """The tasks' hashes in order (of their scrubbed, canonical JSON), and their rows by hash."""
    hashes: list[str] = []
    rows: dict[str, tuple[str, str | None, str]] = {}
    for item in tasks:
        text = scrub(json.dumps(item.task, ensure_ascii=False, sort_keys=True, separators=(",", ":")), secrets)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        hashes.append(digest)
        rows.setdefault(digest, (item.task_key, item.check_kind, text))
    return hashes, rows


def _put_tasks(con: Connection, secrets: Secrets, tasks: Sequence[StoredTask]) -> list[str]:
    """Store the tasks not stored yet; their hashes in order."""
    hashes, rows = _rows(secrets, tasks)
    found = list(rows.items())
    for start in range(0, len(found), _CHUNK):
        chunk = found[start:start + _CHUNK]
        sql = insert_sql("task_set_tasks", ("hash", "task_key", "check_kind", "task_json"), len(chunk))
        con.execute(sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1),
                    [v for digest, row in chunk for v in (digest, *row)])
    return hashes


def _latest(con: Connection, name: str) -> dict[str, Any] | None:
    found = dicts(con.execute("SELECT version, origin, task_hashes FROM task_set_versions WHERE name = ? "
                              "ORDER BY version DESC LIMIT 1", [name]))
    return found[0] if found else None


def _insert_version(con: Connection, secrets: Secrets, name: str, version: int, hashes: list[str], *,
                    origin: str, note: str | None) -> None:
    if origin not in ORIGINS:
        raise InvalidQuery(f"origin must be one of {', '.join(ORIGINS)}, got {origin!r}")
    con.execute("INSERT INTO task_set_versions (name, version, created_at, origin, note, task_hashes) "
                "VALUES (?, ?, ?, ?, ?, ?)", [name, version, utcnow(), origin, scrub(note, secrets), hashes])


def create_set(con: Connection, secrets: Secrets, name: str, tasks: Sequence[StoredTask], *, source: str = "stored",
               origin: str = "created", note: str | None = None) -> int | None:
    """A new set with its first version (1); None when a set of that name exists."""
    if source not in SOURCES:
        raise InvalidQuery(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if scalar(con, "SELECT count(*) FROM task_sets WHERE name = ?", [name]):
        return None
    con.execute("INSERT INTO task_sets (name, source, created_at) VALUES (?, ?, ?)", [name, source, utcnow()])
    _insert_version(con, secrets, name, 1, _put_tasks(con, secrets, tasks), origin=origin, note=note)
    return 1


def add_version(con: Connection, secrets: Secrets, name: str, tasks: Sequence[StoredTask], *, origin: str,
                note: str | None = None, base_version: int | None = None) -> int | None:
    """The set's next version (its number); None for an unknown set. VersionConflict when `base_version` is
    given and is no longer the latest (someone else edited the set meanwhile)."""
    latest = _latest(con, name)
    if latest is None:
        return None
    if base_version is not None and base_version != latest["version"]:
        raise VersionConflict(f"task set {name!r} is at version {latest['version']}, not {base_version}; read it "
                              "again and redo the edit")
    version = int(latest["version"]) + 1
    _insert_version(con, secrets, name, version, _put_tasks(con, secrets, tasks), origin=origin, note=note)
    return version


def sync_bundled(con: Connection, secrets: Secrets, name: str, tasks: Sequence[StoredTask]) -> int:
    """A bundled set as its file has it now: copied in as version 1 the first time; a new version when the
    file changed and nobody edited the set since (an edited set is the user's: the file no longer changes
    it). The set's latest version."""
    latest = _latest(con, name)
    if latest is None:
        created = create_set(con, secrets, name, tasks, source=BUNDLED, origin=BUNDLED,
                             note="copied from the bundled file")
        assert created is not None
        return created
    if latest["origin"] != BUNDLED:
        return int(latest["version"])
    if list(latest["task_hashes"]) == _rows(secrets, tasks)[0]:
        return int(latest["version"])
    hashes = _put_tasks(con, secrets, tasks)
    version = int(latest["version"]) + 1
    _insert_version(con, secrets, name, version, hashes, origin=BUNDLED, note="the bundled file changed")
    return version


# ------------------------------------------------------------------ reads
def list_sets(con: Connection) -> list[dict[str, Any]]:
    """Every set with its latest version: name, source, version, tasks (count), origin, note, versions, times."""
    return dicts(con.execute("SELECT * FROM v_task_sets ORDER BY name"))


def get_set(con: Connection, name: str, version: int | None = None) -> dict[str, Any] | None:
    """One version of a set (the latest by default) with its tasks (parsed) and every version's summary;
    None when the set, or that version of it, is unknown."""
    versions = dicts(con.execute(
        "SELECT version, created_at, origin, note, len(task_hashes) AS tasks FROM task_set_versions WHERE name = ? "
        "ORDER BY version", [name]))
    if not versions:
        return None
    chosen = versions[-1]["version"] if version is None else version
    meta = next((v for v in versions if v["version"] == chosen), None)
    if meta is None:
        return None
    source = scalar(con, "SELECT source FROM task_sets WHERE name = ?", [name])
    tasks = [json.loads(r[0]) for r in con.execute(
        """SELECT t.task_json FROM (SELECT unnest(task_hashes) AS hash, generate_subscripts(task_hashes, 1) AS pos
                                    FROM task_set_versions WHERE name = ? AND version = ?) h
           JOIN task_set_tasks t ON t.hash = h.hash ORDER BY h.pos""", [name, chosen]).fetchall()]
    return {"name": name, "source": source, "version": chosen, "latest_version": versions[-1]["version"],
            "created_at": meta["created_at"], "origin": meta["origin"], "note": meta["note"], "tasks": tasks,
            "versions": versions}


class TaskSetLog(StorePart):
    """The Store's task-set methods (mixed into `agent.log.store.Store`); each write is one transaction."""

    def list_task_sets(self) -> list[dict[str, Any]]:
        """Every stored set with its latest version's summary, by name."""
        return self._read(list_sets)

    def get_task_set(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version of a set (the latest by default) with its tasks; None if unknown."""
        return self._read(get_set, name, version)

    def create_task_set(self, name: str, tasks: Sequence[StoredTask], *, source: str = "stored",
                        origin: str = "created", note: str | None = None) -> int | None:
        """A new set (version 1); None when the name is taken."""
        version = self._write(create_set, name, tasks, source=source, origin=origin, note=note)
        self._request_snapshot()
        return None if version is None else int(version)

    def add_task_set_version(self, name: str, tasks: Sequence[StoredTask], *, origin: str, note: str | None = None,
                             base_version: int | None = None) -> int | None:
        """The set's next version; None for an unknown set; VersionConflict when `base_version` is stale."""
        version = self._write(add_version, name, tasks, origin=origin, note=note, base_version=base_version)
        self._request_snapshot()
        return None if version is None else int(version)

    def sync_bundled_task_set(self, name: str, tasks: Sequence[StoredTask]) -> int:
        """A bundled set as its file has it (copied in, or followed while unedited); its latest version."""
        return int(self._write(sync_bundled, name, tasks))
