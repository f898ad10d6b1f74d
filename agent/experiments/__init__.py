"""Experiments: a task set run across variants and repeats, graded without a human, with honest statistics.

`tasks` (tasks, checks, task sets), `checks` (grading a result), `stats` (intervals, pass@k, the
paired test). Every cell of an experiment is an ordinary run through the run service.
"""
