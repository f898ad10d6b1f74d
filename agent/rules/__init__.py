"""Pure rules at the floor of the house: what a request, a URL or a schema may be.

`urls` (URLs parsed as Chromium parses them), `policy` (where a run's browser may go, where a
webhook may be sent), `sensitive` (the shape of `sensitive_data`) and `toolschema` (a user's JSON
Schema in each provider's tool dialect). Standard library, pydantic and agent.limits/agent.providers
only: the request model validates with them and the engine enforces with them.
"""
