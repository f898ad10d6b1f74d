"""How the app was asked to run: host, port, data folder, API key (kept here, never printed), and the
names it answers to."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "data" / "demo"
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")
# Paths of the workbench's own origin the agent may open (the demo shop); the rest (UI, /api,
# /gradio_api, the login) is refused to it, so that a page it visits cannot read the run log.
DEFAULT_AGENT_PATHS = ("/demo/",)


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
    demo_dir: Path = DEMO_DIR
    allowed_hosts: tuple[str, ...] = ()  # ALLOWED_HOSTS: more names the app is served as (a proxy's, a LAN name)
    agent_paths: tuple[str, ...] = DEFAULT_AGENT_PATHS  # WORKBENCH_AGENT_PATHS

    def served_hosts(self) -> frozenset[str]:
        """The Host names answered: --host, localhost, 127.0.0.1, ::1 and ALLOWED_HOSTS (lower case)."""
        names = {*LOCAL_NAMES, *(h.lower().strip("[]") for h in self.allowed_hosts)}
        if self.host not in WILDCARD_HOSTS:
            names.add(self.host.lower().strip("[]"))
        return frozenset(names)


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
