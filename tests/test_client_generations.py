"""client.generations: of a page's answers, only those for the drawing on its pad are shown."""

from __future__ import annotations

from client.generations import Generations


def test_an_answer_is_current_until_its_page_sends_a_newer_generation():
    generations = Generations()
    generations.see("page", 1)  # an answer asked for the first drawing starts
    assert generations.is_current("page", 1)
    generations.see("page", 2)  # a stroke or a Clear
    assert not generations.is_current("page", 1) and generations.is_current("page", 2)


def test_a_late_older_generation_does_not_make_the_stale_answers_current_again():
    generations = Generations()
    generations.see("page", 3)  # the Clear reached the server first...
    generations.see("page", 2)  # ...then an answer asked before it
    assert not generations.is_current("page", 2) and generations.is_current("page", 3)


def test_pages_do_not_supersede_each_other():
    generations = Generations()
    generations.see("mine", 1)
    generations.see("theirs", 5)
    assert generations.is_current("mine", 1)


def test_calls_that_send_no_generation_never_drop_each_other():
    generations = Generations()  # the app's API: every call at generation 0, in one session
    generations.see("script", 0)
    generations.see("script", 0)
    assert generations.is_current("script", 0)


def test_a_direct_call_without_a_page_is_always_current():
    generations = Generations()
    generations.see(None, 7)
    assert generations.is_current(None, 0)


def test_the_longest_unused_page_is_forgotten_first():
    generations = Generations(max_pages=2)
    generations.see("old", 4)
    generations.see("b", 1)
    generations.see("c", 1)  # a third page: old is forgotten, at generation 0 again
    assert generations.is_current("old", 0)
    assert not generations.is_current("b", 0) and not generations.is_current("c", 0)


def test_a_strokes_late_event_clears_only_what_was_asked_before_the_stroke():
    generations = Generations()
    generations.see("page", 3)  # the stroke starting drawing 3, then Why? clicked on drawing 3
    generations.show("page", "heat", 3)
    generations.show("page", "correction", 2)  # saved for the drawing before the stroke
    assert not generations.shows_older("page", "heat", 3)  # the stroke's late clear spares it
    assert generations.shows_older("page", "correction", 3)
    assert generations.shows_older("page", "heat", 4)  # the next stroke takes it away


def test_a_forgotten_page_forgets_what_it_showed():
    generations = Generations(max_pages=1)
    generations.see("old", 2)
    generations.show("old", "heat", 2)
    generations.see("new", 1)
    assert generations.shows_older("old", "heat", 0)
