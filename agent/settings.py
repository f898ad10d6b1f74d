"""How the app was asked to run: host, port, data folder, API key (kept here, never printed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "data" / "demo"


@dataclass(frozen=True)
class Settings:
    """How the app was asked to run (the API key is kept here and never printed)."""

    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = field(default_factory=lambda: Path("data"))
    api_key: str | None = field(default=None, repr=False)
    demo_dir: Path = DEMO_DIR


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
