"""Cached workflows: the document, recording from a run, replay with healing, locating elements, routes."""
