"""The run log, one module per job (duckdb is imported only in this folder, never at `import agent.log`).

`store` (the `Store`: opens, migrates, writes, reads; the only writer), `writes` and `rows` (its
transactions and rows), `redact` (secrets kept out), `snapshots` (read-only copies for readers),
`export` (Parquet), `schema` (generated docs), `protocol` (`RunLog`, the surface the run service
holds), `migrations`, `analysis` (the notebooks' helpers) and `errors`. The CLI:
`python -m agent.log {export,snapshot,schema}`.
"""
