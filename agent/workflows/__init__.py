"""Cached workflows: the document, recording from a run, replay and healing, locating elements, re-reading results.

Their HTTP routes live with the service (`agent.service.workflow_routes`): this floor is below it.
"""
