"""How the app words an answer (client.app.answer_text): the label with its calibrated
confidence, the runner-up when the model is unsure, and never a guess presented as an answer
when the service does not accept the drawing as a character."""

from __future__ import annotations

from client.app import answer_text


def answer(model: str, ranking: list[tuple[str, float]], accepted: bool = True) -> dict:
    top_k = [{"label": label, "probability": p} for label, p in ranking]
    return {"model": model, "version": "1.0", "label": ranking[0][0], "confidence": ranking[0][1],
            "accepted": accepted, "top_k": top_k}


def test_a_sure_answer_is_the_label_and_its_calibrated_confidence():
    assert answer_text(answer("digits", [("7", 0.918), ("1", 0.03)])) == "### 7\n91.8% sure"


def test_an_unsure_answer_names_the_runner_up():
    text = answer_text(answer("digits", [("0", 0.492), ("1", 0.103)]))
    assert text == "### 0\n49.2% sure: not sure, it could also be 1 (10.3%)"


def test_a_drawing_the_service_does_not_accept_is_said_to_be_none_of_its_characters():
    blob = answer("digits", [("8", 0.952), ("0", 0.02)], accepted=False)
    assert answer_text(blob).startswith("### This does not look like a digit\n(the closest is 8, 95.2%")
    assert answer_text(answer("letters", [("O", 0.6)], accepted=False)).startswith("### This does not look like a letter")
    assert answer_text(answer("balanced", [("O", 0.6)], accepted=False)).startswith(
        "### This does not look like a digit or letter")
