"""Specification of the label maps (training/labels.py)."""

import numpy as np

from training import labels as L


def test_class_counts_follow_the_emnist_conventions():
    assert len(L.DIGITS) == 10 and len(L.LETTERS) == 26 and len(L.BALANCED) == 47
    assert L.BALANCED[:10] == L.DIGITS and L.BALANCED[10:36] == L.LETTERS


def test_index_to_name_is_what_torchserve_reads():
    mapping = L.index_to_name("letters")
    assert mapping["0"] == "A" and mapping["25"] == "Z" and len(mapping) == 26


def test_letters_merge_upper_and_lower_case():
    byclass = np.array([L.BYCLASS.index(c) for c in "aAzZgG"])
    assert [L.LETTERS[i] for i in L.byclass_to_letters(byclass)] == list("AAZZGG")


def test_letters_mark_digits_as_not_letters():
    assert (L.byclass_to_letters(np.arange(10)) == -1).all()


def test_balanced_keeps_distinct_lower_case_and_merges_the_rest():
    chars = "0aAbBcCoOlLtTsS9"
    byclass = np.array([L.BYCLASS.index(c) for c in chars])
    names = [L.BALANCED[i] for i in L.byclass_to_balanced(byclass)]
    assert names == list("0aAbBCCOOLLtTSS9")


def test_every_byclass_label_maps_onto_balanced():
    mapped = L.byclass_to_balanced(np.arange(62))
    assert set(mapped) == set(range(47))


def test_emnist_letters_labels_start_at_one():
    assert list(L.emnist_letters_to_index(np.array([1, 26]))) == [0, 25]
