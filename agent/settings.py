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
