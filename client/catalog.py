"""What TorchServe serves: every registered model version, its workers and which one is default.

TorchServe's management API has no single call for this: ``GET /models`` lists the names,
``GET /models/<name>/all`` describes every version (settings and workers) and ``GET /models/<name>``
describes the default one. :func:`registered_versions` makes those calls; the rest are pure
functions that shape the result for the app's model pickers and its Models table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from client.api import TorchServeClient

TABLE_HEADERS = ["model", "version", "default", "workers", "worker status", "min", "max", "archive"]
CHOICE_SEPARATOR = "/"  # a picker's value is "<model>/<version>"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as the management API describes it."""

    name: str
    version: str
    is_default: bool
    archive: str
    min_workers: int
    max_workers: int
    worker_states: tuple[str, ...]  # one status per running worker: READY, UNLOADING, ...

    @property
    def choice(self) -> str:
        return f"{self.name}{CHOICE_SEPARATOR}{self.version}"

    @classmethod
    def from_description(cls, description: Mapping[str, Any], default: str) -> "ModelVersion":
        """From one entry of ``GET /models/<name>/all``; ``default`` is the default version."""
        return cls(
            name=description["modelName"],
            version=description["modelVersion"],
            is_default=description["modelVersion"] == default,
            archive=description.get("modelUrl", ""),
            min_workers=int(description.get("minWorkers", 0)),
            max_workers=int(description.get("maxWorkers", 0)),
            worker_states=tuple(worker["status"] for worker in description.get("workers", [])),
        )


def registered_versions(client: TorchServeClient) -> list[ModelVersion]:
    """Every version of every registered model, by model name then version."""
    versions = []
    for model in client.models():
        name = model["modelName"]
        default = client.describe(name)[0]["modelVersion"]
        versions += [ModelVersion.from_description(d, default) for d in client.describe(name, "all")]
    return sorted(versions, key=lambda v: (v.name, v.version))


def version_choices(versions: list[ModelVersion]) -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a dropdown: ``("digits 1.0 (default)", "digits/1.0")``."""
    return [(choice_label(v.choice) + (" (default)" if v.is_default else ""), v.choice) for v in versions]


def choice_label(choice: str) -> str:
    """A picker's value as the page names it: ``"digits/1.0"`` -> ``"digits 1.0"``."""
    return " ".join(part for part in choice.partition(CHOICE_SEPARATOR)[::2] if part)


def parse_choice(choice: str) -> tuple[str, str]:
    """A picker's value back into ``(model, version)``."""
    name, separator, version = choice.partition(CHOICE_SEPARATOR)
    if not (name and separator and version):
        raise ValueError(f"choose a model version (got {choice!r})")
    return name, version


def pick(versions: list[ModelVersion], current: str | None, preferred_model: str) -> str | None:
    """The picker's value after a refresh: ``current`` while it is still registered, else the
    default version of its model (another version of the model it showed), else the default
    version of ``preferred_model``, else the first version, else nothing."""
    choices = [v.choice for v in versions]
    if current in choices:
        return current
    shown = current.partition(CHOICE_SEPARATOR)[0] if current else None
    defaults = {v.name: v.choice for v in versions if v.is_default}
    return defaults.get(shown) or defaults.get(preferred_model) or (choices or [None])[0]


def worker_summary(states: tuple[str, ...]) -> str:
    """``("READY", "READY", "UNLOADING")`` -> ``"2 READY, 1 UNLOADING"``; ``"none"`` for none."""
    counts = Counter(states)
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items())) or "none"


def table_rows(versions: list[ModelVersion]) -> list[list[Any]]:
    """Rows of the Models table, in :data:`TABLE_HEADERS` order."""
    return [
        [
            v.name,
            v.version,
            "yes" if v.is_default else "",
            len(v.worker_states),
            worker_summary(v.worker_states),
            v.min_workers,
            v.max_workers,
            v.archive,
        ]
        for v in versions
    ]


def store_archives(model_store: Path | None) -> list[str]:
    """The ``.mar`` files TorchServe may register: those in its model store."""
    return sorted(path.name for path in model_store.glob("*.mar")) if model_store else []


def archive_name(archive: str, model_store: Path | None) -> str:
    """The file name TorchServe needs to register ``archive``, which must be a ``.mar`` in the
    model store: the server refuses anything else (allowed_urls), so say so before asking it."""
    path = Path(archive)
    if model_store is None:
        raise ValueError("the model store is unknown: start the server with make serve first")
    if path.suffix != ".mar":
        raise ValueError(f"{archive} is not a model archive (.mar)")
    resolved = (model_store / path).resolve() if path.name == archive else path.resolve()
    if resolved.parent != model_store.resolve():
        raise ValueError(
            f"{archive} is not in the model store {model_store}: only archives there can be "
            "registered (copy it there, or build it with make archive)"
        )
    if not resolved.is_file():
        raise ValueError(f"{resolved} does not exist (make archive builds the archives)")
    return resolved.name
