"""Specification of training/calibrate.py and handler/confidence.py: temperature scaling makes
over-confident answers honest, ECE measures it, and the rejection rule is the one the service
applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handler.confidence import accepted, answered_probabilities, reject_probability
from training.calibrate import calibration_bins, expected_calibration_error, fit_temperature, plot_reliability, reject_threshold


def overconfident_logits(n: int = 4000, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfectly calibrated model's logits (each label drawn from the softmax of its logits)
    multiplied by 4: the softmax then claims far more than the share of right answers."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2.0
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1)
    return logits * 4.0, labels


def test_a_fitted_temperature_cools_overconfident_logits_and_lowers_ece():
    logits, labels = overconfident_logits()
    correct = (logits.argmax(1) == labels).numpy()
    before = expected_calibration_error(torch.softmax(logits, 1).max(1).values.numpy(), correct)
    temperature = fit_temperature(logits, labels)
    after = expected_calibration_error(answered_probabilities(logits, 10, temperature).max(1).values.numpy(), correct)
    assert 3.5 < temperature < 4.5  # the logits were scaled by 4
    assert before > 0.15 and after < 0.03


def test_temperature_never_changes_the_ranking():
    logits, _ = overconfident_logits(200)
    assert torch.equal(answered_probabilities(logits, 10, 3.0).argmax(1), logits.argmax(1))


def test_ece_is_zero_when_confidence_matches_accuracy_and_the_gap_otherwise():
    confidence = np.full(1000, 0.75)
    correct = np.arange(1000) % 4 != 0  # 75% right
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(1000, 0.95), correct) == pytest.approx(0.20)
    table = calibration_bins(confidence, correct)
    assert sum(table["count"]) == 1000 and table["count"][11] == 1000  # 0.75 falls in bin 11 of 15


def test_the_reject_threshold_refuses_at_most_the_allowed_share_of_characters():
    p_reject = np.random.default_rng(0).uniform(0, 0.3, 2000)
    threshold = reject_threshold(p_reject, 0.01)
    assert (p_reject >= threshold).mean() <= 0.01
    assert (p_reject >= threshold).mean() >= 0.009  # and not needlessly fewer
    assert reject_threshold(p_reject, 0.0) > p_reject.max()


def test_the_service_rejects_by_the_extra_output_at_the_calibrated_temperature():
    outputs = torch.tensor([[5.0, 0.0, 0.0], [0.0, 1.0, 4.0]])  # 2 characters + "not a character"
    calibration = {"temperature": 2.0, "reject_threshold": 0.5}
    p = reject_probability(outputs, 2, 2.0)
    assert p[0] < 0.1 and p[1] > 0.7
    assert accepted(outputs, 2, calibration).tolist() == [True, False]
    assert answered_probabilities(outputs, 2, 2.0).sum(1).allclose(torch.ones(2))
    # Models without the extra output (or a calibration without a threshold) accept everything.
    assert accepted(outputs[:, :2], 2, calibration).all()
    assert accepted(outputs, 2, {"temperature": 1.0, "reject_threshold": None}).all()
    with pytest.raises(ValueError, match="outputs"):
        reject_probability(outputs[:, :2], 2, 1.0)


def test_the_reliability_diagram_is_written(tmp_path):
    logits, labels = overconfident_logits(500)
    correct = (logits.argmax(1) == labels).numpy()
    path = tmp_path / "reliability.png"
    plot_reliability({"T=1": (torch.softmax(logits, 1).max(1).values.numpy(), correct)}, "test", path)
    assert path.stat().st_size > 1000
