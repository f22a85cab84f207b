"""client.turns: of a page's answers, only the latest one is shown."""

from __future__ import annotations

from client.turns import Turns


def test_an_answer_is_latest_until_another_turn_is_taken_on_its_page():
    turns = Turns()
    first = turns.take("page")
    assert turns.is_latest("page", first)
    second = turns.take("page")  # another answer started, or the pad was cleared
    assert not turns.is_latest("page", first) and turns.is_latest("page", second)


def test_pages_do_not_supersede_each_other():
    turns = Turns()
    mine = turns.take("mine")
    turns.take("theirs")
    assert turns.is_latest("mine", mine)


def test_current_notes_the_turn_without_taking_one():
    turns = Turns()
    answer = turns.take("page")
    heat_map = turns.current("page")
    assert heat_map == answer and turns.is_latest("page", answer)
    turns.take("page")  # a new stroke: the heat map was of another drawing
    assert not turns.is_latest("page", heat_map)


def test_a_direct_call_without_a_page_is_never_stale():
    turns = Turns()
    turn = turns.take(None)
    turns.take(None)
    assert turns.is_latest(None, turn) and turns.current(None) == 0


def test_the_longest_unused_page_is_forgotten_first_and_then_never_stale():
    turns = Turns(max_pages=2)
    old = turns.take("old")
    turns.take("old")  # old's first answer is stale...
    turns.take("b")
    turns.take("c")  # ...until old is forgotten (a third page)
    assert turns.current("old") == 0 and turns.is_latest("old", old)
    assert turns.current("b") == 1 and turns.current("c") == 1


def test_a_live_drawing_repeats_only_when_it_is_the_pages_previous_one():
    turns = Turns()
    assert not turns.repeats("page", b"a 7")
    assert turns.repeats("page", b"a 7")  # Gradio reported the stroke twice (or the pad was cleared since)
    assert not turns.repeats("page", b"a 7 and a stroke")
    assert not turns.repeats("page", b"a 7")  # back to it (undo): answered again
    assert not turns.repeats("other page", b"a 7")
    assert not turns.repeats(None, b"a 7") and not turns.repeats(None, b"a 7")
