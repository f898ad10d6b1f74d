"""The run log: the DuckDB store (the only duckdb importer), migrations, snapshots, export, analysis."""
