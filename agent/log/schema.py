"""The run log's tables and views described from code: docs/run-log.md's schema cannot go stale.

Each description comes from a freshly migrated in-memory database, so it is exactly what
`agent.log.migrations` builds.
"""

from __future__ import annotations

import duckdb

from agent.log.migrations import MIGRATIONS, migrate

__all__ = ["TABLES", "describe_tables", "describe_views", "schema_markdown"]

TABLES = ("tasks", "runs", "steps", "actions", "llm_calls", "workflows", "webhook_deliveries", "system_prompts",
          "llm_traces", "gradings")

Columns = list[tuple[str, str]]


def _describe(kind: str) -> dict[str, Columns]:
    """Each table's (kind="table") or view's (kind="view") (column, type) list, in order."""
    con = duckdb.connect()
    try:
        migrate(con)
        if kind == "view":
            names = [r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() "
                "WHERE NOT internal AND database_name = current_database() ORDER BY view_name"
            ).fetchall()]
        else:
            names = list(TABLES)
        return {
            name: [
                (c, t) for c, t in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                    "AND database_name = current_database() ORDER BY column_index",
                    [name],
                ).fetchall()
            ]
            for name in names
        }
    finally:
        con.close()


def describe_views() -> dict[str, Columns]:
    """Each view's (column, type) list, from a freshly migrated in-memory database."""
    return _describe("view")


def describe_tables() -> dict[str, Columns]:
    """Each table's (column, type) list, from a freshly migrated in-memory database."""
    return _describe("table")


def schema_markdown() -> str:
    """The run log's schema as markdown, generated from code so it cannot go stale."""
    lines = [f"Migrations: {', '.join(fn.__name__ for fn in MIGRATIONS)}.", ""]
    for title, described in (("Views", describe_views()), ("Tables", describe_tables())):
        lines += [f"#### {title}", ""]
        for name, cols in described.items():
            lines.append(f"- `{name}`: " + ", ".join(f"`{c}` {t.lower()}" for c, t in cols))
        lines.append("")
    return "\n".join(lines)
