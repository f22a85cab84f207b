"""Calibrated confidence and the "not a character" threshold, fitted on validation data only.

- **Temperature scaling** (Guo et al. 2017, "On Calibration of Modern Neural Networks", ICML):
  one scalar ``T`` divides the logits before the softmax; it is fitted by minimizing the negative
  log-likelihood on validation data, so the ranking (and the accuracy) never changes.
- **Expected calibration error** (ECE; Naeini et al. 2015, as in Guo et al.): the confidences are
  put in 15 equal-width bins, and the gaps between each bin's accuracy and mean confidence are
  averaged, weighted by the bin's share of the samples.
- **Rejection threshold**: the recognizers have one extra output, "not a character"
  (:mod:`training.nonchars`); a drawing is accepted when its calibrated probability is below a
  threshold chosen so that a small, fixed share of the validation characters is rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The temperature ``T > 0`` minimizing the NLL of ``softmax(logits / T)`` (float logits
    [N, K], int64 labels [N]); fitted on ``log T`` with L-BFGS so ``T`` stays positive."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    logits, labels = logits.detach().double(), labels.detach()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.double().exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-width confidence bin (``bins`` of [0, 1]): sample count, mean confidence and
    accuracy (``None`` for an empty bin). ``confidence`` float [N] in [0, 1], ``correct`` bool [N]."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=confidence, minlength=bins)
    hits = np.bincount(index, weights=correct, minlength=bins)
    mean = lambda total: [float(t / c) if c else None for t, c in zip(total, counts)]
    return {"count": counts.tolist(), "confidence": mean(sums), "accuracy": mean(hits)}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE in [0, 1]: sum over bins of (bin share) x |bin accuracy - bin mean confidence|."""
    table = calibration_bins(confidence, correct, bins)
    total = max(sum(table["count"]), 1)
    return float(sum(
        n / total * abs(a - c)
        for n, a, c in zip(table["count"], table["accuracy"], table["confidence"]) if n
    ))


def reject_threshold(p_reject: np.ndarray, max_false_reject: float) -> float:
    """The threshold on P(not a character) that rejects at most a ``max_false_reject`` share of
    real characters (``p_reject`` [N], their probabilities): accepted means ``p < threshold``."""
    ordered = np.sort(np.asarray(p_reject, dtype=np.float64))
    allowed = int(np.floor(max_false_reject * len(ordered)))  # at most this many at or above
    return float(np.nextafter(ordered[len(ordered) - 1 - allowed], np.inf))


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin, one line per
    ``name -> (confidence, correct)``, with its ECE in the legend; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (confidence, correct) in curves.items():
        table = calibration_bins(confidence, correct)
        points = [(c, a) for c, a in zip(table["confidence"], table["accuracy"]) if c is not None]
        ece = expected_calibration_error(confidence, correct)
        ax.plot(*zip(*points), marker="o", label=f"{name} (ECE {100 * ece:.2f}%)")
    ax.set(xlabel="confidence (mean per bin)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
