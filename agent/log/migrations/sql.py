"""SQL fragments the shipped migrations build their views from, and the notebooks' helpers reuse.

Shipped migrations read these: a fragment is never edited once a migration that uses it has
shipped (a new view that needs other SQL gets a new fragment).
"""

from __future__ import annotations

__all__ = ["OUTCOME_SQL", "RUN_DAY", "WILSON_SQL", "Z95"]

# `day` is the run's UTC start date, whatever the reader's TimeZone setting: the same run always
# falls on the same day in views and in the Parquet export.
RUN_DAY = "CAST(timezone('UTC', r.started_at) AS DATE)"


# How each stop reason counts (agent.models.StopReason). A success rate is over the runs where the
# agent had a fair chance: success and agent failures; runs stopped from outside (cancelled,
# interrupted, shutdown) and infrastructure failures (the provider, a missing key, the browser, our
# own bugs) are counted apart. A finished run without a stop reason (none could be inferred) counts
# as an agent failure.
OUTCOME_SQL = """CASE
    WHEN {r}.status = 'in_progress' THEN 'in_progress'
    WHEN {r}.status = 'success' THEN 'success'
    WHEN {r}.stop_reason IN ('cancelled', 'interrupted', 'shutdown') THEN 'stopped'
    WHEN {r}.stop_reason IN ('model_error', 'missing_key', 'browser_error', 'internal_error') THEN 'infrastructure'
    ELSE 'agent_failure' END"""
# The 95% Wilson score interval of k successes in n runs (z = 1.96): honest for small n and rates near 0 or 1.
WILSON_SQL = """CASE WHEN {n} > 0 THEN greatest(0.0, least(1.0,
    ({k} / {n} + 1.9208 / {n} {sign} 1.96 * sqrt({k} / {n} * (1 - {k} / {n}) / {n} + 0.9604 / ({n} * {n})))
    / (1 + 3.8416 / {n}))) END"""

# z for a two-sided 95% interval; the Wilson bounds below are agent.experiments.stats.wilson in SQL
# (a test checks that both give the same numbers).
Z95 = "1.959963984540054"
