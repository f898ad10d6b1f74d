"""Experiments: a task set run across variants and repeats, graded without a human, with honest statistics.

`tasks` (tasks, checks, task sets), `checks` (grading a result), `spec` (what an experiment request
may hold), `runner` (playing the cells), `estimate` (a dry run), `report` (what every surface shows);
the statistics themselves are `agent.stats`. Every cell of an experiment is an ordinary run through the
run service.
"""
