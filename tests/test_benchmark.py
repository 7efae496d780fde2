"""The accuracy benchmark's own arithmetic: what it counts as a confusion of characters."""

from __future__ import annotations

from platestream.workers.benchmark import confusions


def test_a_character_read_as_another_is_one_confusion_of_that_pair() -> None:
    assert confusions([("R820503", "RB20503"), ("YF2U68", "YF2U6B")]) == {"8>B": 2}


def test_a_character_left_out_or_added_is_counted_with_an_empty_side() -> None:
    assert confusions([("CEMENT0", "CEMENT"), ("10DTM", "10DTM59")]) == {"0>": 1, ">5": 1, ">9": 1}


def test_a_run_replaced_by_a_longer_one_pairs_from_the_left_and_counts_the_rest_as_added() -> None:
    assert confusions([("AW1", "ANN1")]) == {"W>N": 1, ">N": 1}


def test_plates_read_right_add_no_confusion() -> None:
    assert confusions([("AB12CDE", "AB12CDE")]) == {}
