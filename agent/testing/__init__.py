"""Fakes for tests, benchmarks and offline demos: no network, no key, real code paths.

- `fakellm`: an OpenAI-compatible chat server on 127.0.0.1 answering from a script or a function,
  reached through litellm's real client code (point `OPENAI_BASE_URL` at it);
- `sites.serve_dir`: a static site on 127.0.0.1;
- `workflow_site`: a small shop whose pages can be changed on purpose, and scripted agents for it
  (what the workflow tests and benchmark replay and heal).
"""
