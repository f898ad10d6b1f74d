"""How the app was asked to run: host, port, data folder, API key (kept here, never printed), the names
it answers to, and the model the form starts with."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.limits import MAX_REVIEWER_CHARS
from agent.models.review import REVIEWER_PATTERN
from agent.providers import DEFAULT_MODELS, DEFAULT_PROVIDER, PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "data" / "demo"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
# Paths of the workbench's own origin the agent may open (the demo shop); the rest (UI, /api,
# /gradio_api, the login) is refused to it, so that a page it visits cannot read the run log.
DEFAULT_AGENT_PATHS = ("/demo/", "/miniwob/")  # the demo shop and the MiniWoB++ pages


def split_list(raw: str) -> tuple[str, ...]:
    """Entries of a comma- or space-separated setting, trimmed, empty ones dropped."""
    return tuple(e for e in re.split(r"[,\s]+", raw.strip()) if e)


@dataclass(frozen=True)
class Settings:
    """How the app was asked to run (the API key is kept here and never printed)."""

    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = field(default_factory=lambda: Path("data"))
    api_key: str | None = field(default=None, repr=False)
    # WORKBENCH_API_KEYS: (name, key) pairs; a request with one of these keys acts as that name (a reviewer).
    named_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    demo_dir: Path = DEMO_DIR
    allowed_hosts: tuple[str, ...] = ()  # ALLOWED_HOSTS: more names the app is served as (a proxy's, a LAN name)
    agent_paths: tuple[str, ...] = DEFAULT_AGENT_PATHS  # WORKBENCH_AGENT_PATHS
    # The provider and model the form shows on a fresh page (DEFAULT_PROVIDER, DEFAULT_MODEL); a request
    # that names no model still gets the contract's default.
    form_model: tuple[str, str] = (DEFAULT_PROVIDER, DEFAULT_MODELS[DEFAULT_PROVIDER])

    def served_hosts(self) -> frozenset[str]:
        """The Host names answered: --host, localhost, 127.0.0.1, ::1 and ALLOWED_HOSTS (lower case)."""
        names = {*LOCAL_NAMES, *(h.lower().strip("[]") for h in self.allowed_hosts)}
        if self.host not in WILDCARD_HOSTS:
            names.add(self.host.lower().strip("[]"))
        return frozenset(names)

    @property
    def keys_required(self) -> bool:
        """True when /api and /gradio_api need a key (WORKBENCH_API_KEY or WORKBENCH_API_KEYS is set)."""
        return bool(self.api_key or self.named_keys)


_KEY_NAME = re.compile(REVIEWER_PATTERN)  # a key's name is a reviewer's name


def named_keys_from_env() -> tuple[tuple[str, str], ...]:
    """WORKBENCH_API_KEYS: `name:key,name:key` (a key names the person who holds it); ValueError naming the fix."""
    raw = os.environ.get("WORKBENCH_API_KEYS", "").strip()
    out: list[tuple[str, str]] = []
    for n, entry in enumerate(e.strip() for e in raw.split(",") if e.strip()):
        name, sep, key = (part.strip() for part in entry.partition(":"))
        where = f"WORKBENCH_API_KEYS entry {n + 1}"
        if not sep or not key:
            raise ValueError(f"{where} has no key: write each entry as name:key, e.g. alice:<a long random key>")
        if not _KEY_NAME.match(name) or len(name) > MAX_REVIEWER_CHARS:
            raise ValueError(f"{where}: the name must be 1 to {MAX_REVIEWER_CHARS} letters, digits, spaces or . @ ' + -"
                             " (it is shown as the reviewer)")
        if any(key == k for _name, k in out):
            raise ValueError(f"{where}: that key is already another entry's; give every person a key of their own")
        out.append((name, key))
    return tuple(out)


def hosts_from_env() -> tuple[str, ...]:
    """ALLOWED_HOSTS: extra host names the app answers to (comma or space separated)."""
    return split_list(os.environ.get("ALLOWED_HOSTS", ""))


def agent_paths_from_env() -> tuple[str, ...]:
    """WORKBENCH_AGENT_PATHS: the paths of the app's own origin the agent may open ("none": no path)."""
    raw = os.environ.get("WORKBENCH_AGENT_PATHS")
    if raw is None:
        return DEFAULT_AGENT_PATHS
    paths = split_list(raw)
    if paths in ((), ("none",)):
        return ()
    bad = [p for p in paths if not p.startswith("/")]
    if bad:
        raise ValueError(f"WORKBENCH_AGENT_PATHS entry {bad[0]!r} must be a path starting with '/', e.g. /demo/")
    return paths


def form_model_from_env() -> tuple[str, str]:
    """DEFAULT_PROVIDER and DEFAULT_MODEL: (provider, model) the form starts with; ValueError naming the fix."""
    provider = os.environ.get("DEFAULT_PROVIDER", "").strip().lower() or DEFAULT_PROVIDER
    if provider not in PROVIDERS:
        raise ValueError(f"DEFAULT_PROVIDER {provider!r} is not a provider; use one of: {', '.join(PROVIDERS)}")
    model = os.environ.get("DEFAULT_MODEL", "").strip() or DEFAULT_MODELS[provider]
    if len(model) > 200 or any(c.isspace() for c in model):
        raise ValueError(f"DEFAULT_MODEL {model[:60]!r} is not a model name; give one such as gpt-4.1-mini")
    return provider, model


def demo_base_url(settings: Settings, request_url: str | None = None) -> str:
    """Where the agent's browser (on this machine) reaches this server (the demo examples, `{BASE_URL}` in tasks)."""
    if settings.port:
        host = settings.host
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"  # listening everywhere: loopback is always among them
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{settings.port}"
    if request_url:  # --port 0: only the request knows the port picked
        from urllib.parse import urlsplit

        parts = urlsplit(request_url)
        return f"{parts.scheme}://{parts.netloc}"
    return "http://127.0.0.1:7860"
