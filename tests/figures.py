"""Measured figures of the reliability tests, for docs/reliability.md.

Each scenario writes its numbers (requests sent, failed, recovery time, ...) with :func:`record`
into ``tests/artifacts/reliability.json`` (git-ignored), one key per scenario, so the document
quotes a real run: ``make test`` or ``pytest tests/test_reliability.py tests/test_fuzz.py
tests/test_security.py`` rewrites the scenarios it runs and keeps the others.
``python -m tests.figures`` prints them, one line per scenario, for the document.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FIGURES = ARTIFACTS / "reliability.json"


def record(scenario: str, figures: dict[str, Any]) -> None:
    """Store ``figures`` under ``scenario``, stamped with the time and the machine."""
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        everything = json.loads(FIGURES.read_text())
    except (FileNotFoundError, ValueError):
        everything = {}
    everything[scenario] = {
        **figures,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    FIGURES.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")


def main() -> None:
    everything = json.loads(FIGURES.read_text())
    for scenario, figures in sorted(everything.items()):
        print(f"{scenario}: " + json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
