"""Fakes for tests, benchmarks and offline demos: no network, no key, real code paths.

- `fakellm`: an OpenAI-compatible chat server on 127.0.0.1 answering from a script or a function,
  reached through litellm's real client code (point `OPENAI_BASE_URL` at it);
- `fakeproviders`: protocol-faithful fakes of Anthropic Messages and Gemini generateContent, and the
  request rules of the OpenAI dialects (OpenAI, Groq, Mistral, Together, DeepSeek);
- `sites.serve_dir`: a static site on 127.0.0.1 (`?delay_ms=N` answers late, like a real network);
- `workflow_site`: a small shop whose pages can be changed on purpose, and scripted agents for it
  (what the workflow tests and benchmark replay and heal).
"""
