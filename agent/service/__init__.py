"""The run service (the only door to the run log), its HTTP routes and webhook delivery."""
