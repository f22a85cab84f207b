"""How the app words an answer (client.app.answer_text, text_status): the label with its
calibrated confidence, the runner-up when the model is unsure, and never a guess presented as an
answer when the service does not accept the drawing (or a piece of a string) as a character."""

from __future__ import annotations

from client.app import answer_text, text_status


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


def text_answer(pieces: list[tuple[str, bool]]) -> dict:
    characters = [{"label": label, "confidence": 0.9, "accepted": accepted, "box": [0, 0, 1, 1], "top_k": []}
                  for label, accepted in pieces]
    return {"model": "digits", "version": "1.0", "mode": "text", "text": "".join(label for label, _ in pieces),
            "confidence": 0.9 ** len(pieces), "accepted": all(a for _, a in pieces), "characters": characters}


def test_a_string_read_whole_is_the_string_its_length_and_confidence():
    assert text_status(text_answer([("1", True), ("7", True)])) == "digits 1.0 reads **17** (2 characters, confidence 81.0%)"
    assert text_status(text_answer([("1", True)])).startswith("digits 1.0 reads **1** (1 character, confidence ")


def test_a_string_holding_pieces_that_are_no_character_says_which():
    one = text_status(text_answer([("1", True), ("7", False), ("4", True)]))
    assert one.endswith(". **Check it:** piece 2 (read as 7) does not look like a digit")
    two = text_status(text_answer([("1", False), ("7", True), ("4", False)]))
    assert two.endswith("piece 1 (read as 1), piece 3 (read as 4) do not look like digits")
