"""The benchmark's settings: one profile of ``config/benchmarks.yaml`` as typed values."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parent.parent / "config" / "benchmarks.yaml"


@dataclass(frozen=True)
class HandlerProfile:
    """In-process handler cost."""

    canvases: int
    repeats: int
    forward_batch_sizes: tuple[int, ...]
    forward_seconds: float


@dataclass(frozen=True)
class LoadProfile:
    """How one series of load runs is measured (the shipped configuration, or one sweep cell)."""

    concurrency: tuple[int, ...]
    rounds: int
    seconds: float
    warmup_seconds: float
    max_requests: int


@dataclass(frozen=True)
class ServingProfile:
    """TorchServe with the shipped configuration: cold starts and the load against the baseline."""

    cold_starts: int
    canvases_per_model: int
    flask_model: str  # the model the plain Flask baseline serves, measured on that model's canvases
    load: LoadProfile


@dataclass(frozen=True)
class SweepProfile:
    """Workers x batch size for one recognizer and the baseline under the same configuration."""

    model: str
    workers: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    max_batch_delay_ms: int
    load: LoadProfile


@dataclass(frozen=True)
class AccuracyProfile:
    """The shipped models over HTTP; ``images`` ``None`` means the whole test split."""

    images: int | None
    canvases: int
    concurrency: int


@dataclass(frozen=True)
class Profile:
    name: str
    handler: HandlerProfile
    serving: ServingProfile
    sweep: SweepProfile
    accuracy: AccuracyProfile

    @classmethod
    def load(cls, name: str, path: Path = CONFIG) -> "Profile":
        """The profile ``name`` of ``path``; a missing or unknown key is an error."""
        profiles = yaml.safe_load(path.read_text())["profiles"]
        if name not in profiles:
            raise KeyError(f"no profile {name!r} in {path}: choose one of {sorted(profiles)}")
        raw = profiles[name]
        serving = dict(raw["serving"])
        sweep = dict(raw["sweep"])
        return cls(
            name=name,
            handler=_build(HandlerProfile, raw["handler"]),
            serving=ServingProfile(
                cold_starts=serving.pop("cold_starts"),
                canvases_per_model=serving.pop("canvases_per_model"),
                flask_model=serving.pop("flask_model"),
                load=_build(LoadProfile, serving),
            ),
            sweep=SweepProfile(
                model=sweep.pop("model"),
                workers=tuple(sweep.pop("workers")),
                batch_sizes=tuple(sweep.pop("batch_sizes")),
                max_batch_delay_ms=sweep.pop("max_batch_delay_ms"),
                load=_build(LoadProfile, sweep),
            ),
            accuracy=_build(AccuracyProfile, raw["accuracy"]),
        )


COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Goal:
    """A bound on a headline figure, written ``">= 0.9"``, ``"<= 1.2"`` or strictly (``"< 1"``)."""

    comparison: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Goal":
        comparison, bound = text.split()
        if comparison not in COMPARISONS:
            raise ValueError(f"a goal is a comparison ({', '.join(COMPARISONS)}) and a number, not {text!r}")
        return cls(comparison, float(bound))

    def met(self, value: float) -> bool:
        return COMPARISONS[self.comparison](value, self.bound)

    def __str__(self) -> str:
        return f"{self.comparison} {self.bound:g}"


def load_goals(path: Path = CONFIG) -> tuple[dict[str, Goal], float]:
    """The goals per headline figure, and the platform notes' req/s for comparison."""
    config = yaml.safe_load(path.read_text())
    return {key: Goal.parse(text) for key, text in config["goals"].items()}, float(config["platform_notes_rps_c8"])


def _build(kind: type, values: dict[str, Any]) -> Any:
    """``kind(**values)`` with lists turned into tuples; unknown or missing keys are errors."""
    names = {f.name for f in fields(kind)}
    if set(values) != names:
        raise KeyError(f"{kind.__name__} expects {sorted(names)}, got {sorted(values)}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
