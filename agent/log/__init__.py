"""The run log, one module per job (duckdb is imported only in this folder, never at `import agent.log`).

`store` (the `Store`: opens, migrates, writes, reads; the only writer), `writes` (its transactions),
`rows` (records to rows and back, by column name), `queries` (the runs list and its filters),
`outbox` (webhooks owed), `experiments` (experiments' tables), `redact` (secrets kept out),
`snapshots` (read-only copies for readers), `export` (Parquet), `schema` (generated docs),
`protocol` (`RunLog`, the surface the run service holds), `migrations/` (one module per migration),
`analysis` with `reading`, `compare`, `diff` and `experiment_analysis` (the notebooks' helpers) and
`errors`. The CLI: `python -m agent.log {export,snapshot,schema}`.
"""
