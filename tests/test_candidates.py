"""Pure post-processing: the registration's text row, candidates from character probabilities,
templates, region choice."""

from __future__ import annotations

import numpy as np
import pytest

from platestream.workers.engine.candidates import choose, readings
from platestream.workers.engine.default import ALPHABET, ctc_alternatives, main_row, stacked_row, text_rows
from platestream.workers.engine.templates import region_fits, regions_for


def positions(text: str, probability: float = 0.95) -> list[list[tuple[str, float]]]:
    return [[(char, probability)] for char in text]


def test_best_reading_is_the_likeliest_characters() -> None:
    best = readings(positions("AB123CD"))[0]
    assert best.plate == "AB123CD"
    assert 90 < best.confidence <= 100


def test_a_doubtful_character_yields_candidates_without_it_and_with_its_alternative() -> None:
    reads = readings([*positions("627W"), [("W", 0.55), ("N", 0.3)], *positions("I")])
    plates = [r.plate for r in reads]
    assert plates[0] == "627WWI"
    assert "627WI" in plates
    assert "627WNI" in plates


def test_a_character_split_between_look_alikes_is_kept_not_dropped() -> None:
    # The final I of RK857AI, read as I (0.45) or 1 (0.40): no single character is likelier than
    # not, but a character is surely there, so the reading keeps it.
    reads = readings([*positions("RK857A"), [("I", 0.45), ("1", 0.40)]])
    plates = [r.plate for r in reads]
    assert plates[0] == "RK857AI"
    assert plates.index("RK857A1") < plates.index("RK857A")


def test_template_picks_the_reading_that_fits_the_region() -> None:
    # An emblem between region code and number, read as a character: Slovak plates are @@###@@.
    reads = readings([*positions("RK"), [("2", 0.6)], *positions("828AG")])
    choice = choose(reads, regions_for("eu", state="sk"), topn=5)
    assert choice is not None
    assert choice.plate == "RK828AG"
    assert choice.matches_template
    assert choice.region == "sk"


def test_a_form_many_regions_issue_beats_a_rare_one_when_the_characters_barely_decide() -> None:
    # LM 010BE (Slovak): O or 0 in third place. LMO10BE fits a Polish and a Slovenian form,
    # LM010BE the form of France and Italy, and one of those of Croatia, Serbia, Slovakia, Poland.
    reads = readings([*positions("LM"), [("O", 0.5), ("0", 0.45)], *positions("10BE")])
    assert reads[0].plate == "LMO10BE"
    choice = choose(reads, regions_for("eu"), topn=5)
    assert choice is not None
    assert choice.plate == "LM010BE"
    assert choice.region == "fr"  # fr and it issue only this form; fr comes first
    assert choice.region_confidence == round(100 / (1 + 1 + 1 / 3 + 1 / 2 + 1 / 3 + 1 / 8))  # a whole percentage
    # Given the region, its own forms decide.
    polish = choose(reads, regions_for("eu", regions=["pl"]), topn=5)
    assert polish is not None
    assert (polish.plate, polish.region, polish.region_confidence) == ("LMO10BE", "pl", 100.0)


def test_a_far_likelier_reading_beats_a_template_match() -> None:
    reads = readings(positions("GWAGEN", 0.99))
    choice = choose(reads, regions_for("eu"), topn=5)
    assert choice is not None
    assert choice.plate == "GWAGEN"
    assert not choice.matches_template


def test_strict_region_mode_drops_readings_that_fit_no_pattern() -> None:
    reads = readings(positions("GWAGEN", 0.99))
    assert choose(reads, regions_for("eu", regions=["fr"]), topn=5, strict=True) is None
    fitting = choose(readings(positions("AB123CD")), regions_for("eu", regions=["fr"]), topn=5, strict=True)
    assert fitting is not None
    assert fitting.region == "fr"
    assert all(c.matches_template for c in fitting.candidates)


def test_topn_limits_candidates_and_the_first_candidate_is_the_plate() -> None:
    reads = readings([[(c, 0.7), ("8", 0.2)] for c in "ABC123"])
    choice = choose(reads, regions_for("us"), topn=3)
    assert choice is not None
    assert len(choice.candidates) == 3
    assert choice.candidates[0].plate == choice.plate


@pytest.mark.parametrize(
    ("country", "state", "regions", "text", "expected"),
    [
        ("br", None, (), "ABC1234", ["br"]),
        ("br", None, (), "ABC1D23", ["br"]),
        ("eu", None, ("fr",), "AB123CD", ["fr"]),
        ("us", "ca", (), "7ABC123", ["us-ca"]),
        ("us", "md", (), "ZZZZZZZZ", []),
    ],
)
def test_region_templates(
    country: str, state: str | None, regions: tuple[str, ...], text: str, expected: list[str]
) -> None:
    assert list(region_fits([text], regions_for(country, state, regions))[text]) == expected


def test_ctc_segments_give_one_position_per_character() -> None:
    steps = np.zeros((7, 1 + len(ALPHABET)), dtype=np.float32)
    path = [0, "A", "A", 0, "A", "7", 0]  # "A A" separated by a blank is two characters
    for t, symbol in enumerate(path):
        steps[t, 0 if symbol == 0 else 1 + ALPHABET.index(str(symbol))] = 0.9
    alternatives = ctc_alternatives(steps)
    assert [a[0][0] for a in alternatives] == ["A", "A", "7"]


def test_us_plates_read_the_letter_o_as_zero() -> None:
    from platestream.workers.engine.candidates import merge_unused

    positions = [[("C", 0.9)], [("H", 0.9)], [("O", 0.6), ("0", 0.3)], [("P", 0.9)]]
    ((char, probability),) = merge_unused(positions, "us")[2]
    assert char == "0"
    assert probability == pytest.approx(0.9)
    assert merge_unused(positions, "eu")[2] == [("O", 0.6), ("0", 0.3)]


def _read(text_positions: list[list[tuple[str, float]]], country: str, *, strict: bool = False) -> str:
    from platestream.workers.engine.candidates import read_plate

    choice = read_plate(text_positions, country, regions_for(country), topn=10, strict=strict)
    assert choice is not None
    return choice.plate


def test_a_european_o_read_firmly_as_zero_is_read_by_the_plates_form() -> None:
    # Slovakia's BA302OZ (@@###@@, a form six countries issue): its O and 0 are one oval, and the
    # reader is sure of a 0 (BA3020Z fits only Poland's rarer @@####@).
    sure_zero = [*positions("BA302"), [("0", 0.98), ("O", 0.01)], *positions("Z")]
    assert _read(sure_zero, "eu") == "BA302OZ"
    assert _read(sure_zero, "us") == "BA3020Z"  # no twins offered where the letter O is not issued


def test_a_twin_is_offered_out_of_its_characters_share_not_on_top_of_it() -> None:
    # Dropping a position costs 1 minus its alternatives' total: a twin must not make a character
    # surer to be there than the reader said.
    from platestream.workers.engine.candidates import offer_twins

    reader = [[("A", 0.9)], [("0", 0.97), ("D", 0.01)], [("O", 0.3), ("0", 0.01)]]
    offered = offer_twins(reader, "eu")
    assert offered is not None
    assert [sum(p for _, p in position) for position in offered] == pytest.approx([0.9, 0.98, 0.31])
    assert dict(offered[1])["O"] == pytest.approx(0.05 * 0.97)
    assert dict(offered[2])["0"] == pytest.approx(0.05 * 0.3)
    assert offer_twins(reader, "us") is None


def test_a_zero_in_a_form_missing_from_the_table_stays_a_zero() -> None:
    # Slovenia's old P 01-299 (@#####, Austria's and Germany's form too): PO1299 would fit the
    # commoner @@####, but one form's prior over another's is not worth a twin's small share.
    assert _read([*positions("P"), [("0", 0.97)], *positions("1299")], "eu") == "P01299"


def test_a_twin_does_not_force_a_plate_of_a_form_missing_from_the_table_into_another_form() -> None:
    # A Polish diplomatic W 053011 (@######, in no table): WO53011 would fit @@#####, which four
    # countries issue, but twins only choose between forms where the reading fits one already.
    sure = [*positions("W", 0.99), [("0", 0.98)], *positions("53011", 0.99)]
    assert _read(sure, "eu") == "W053011"


def test_in_strict_mode_a_twin_may_give_the_reading_the_form_it_needs() -> None:
    sure = [*positions("W", 0.99), [("0", 0.98)], *positions("53011", 0.99)]
    assert _read(sure, "eu", strict=True) == "WO53011"


def test_a_fitting_reading_of_the_same_length_beats_one_with_a_character_dropped() -> None:
    # "R?N464": the doubtful second character read as 0 (fits no pattern) or D (fits @@@###);
    # dropping it would also fit (@@###), but a reader mistakes characters more than it loses them.
    reads = readings([[("R", 0.99)], [("0", 0.55), ("D", 0.4)], *positions("N464", 0.99)])
    choice = choose(reads, regions_for("us"), topn=5)
    assert choice is not None
    assert choice.plate == "RDN464"


def _box(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float32)


def test_the_registration_is_the_row_in_the_plates_middle_not_the_frame_text_above_it() -> None:
    # A California plate in a dealer frame: "STEVENS CREEK" / "California" above the characters,
    # as tall as they are; "VOLKSWAGEN" below, smaller.
    frame, characters, dealer = _box(9, 13, 90, 41), _box(11, 32, 97, 62), _box(9, 54, 99, 68)
    assert [row.tolist() for row in main_row([dealer, characters, frame], crop_height=91)] == [characters.tolist()]


def test_characters_split_at_a_gap_are_one_row() -> None:
    left, right, strip = _box(10, 20, 50, 50), _box(58, 21, 100, 51), _box(2, 10, 8, 50)
    assert len(main_row([left, right], crop_height=70)) == 2
    assert len(main_row([strip, left, right], crop_height=70)) == 3  # side by side, however narrow


def test_a_line_as_tall_directly_below_the_registration_is_a_two_line_plates_other_line() -> None:
    top, bottom = _box(40, 20, 120, 60), _box(30, 68, 130, 110)  # a square plate's GF over 938BC
    rows = text_rows([bottom, top])
    assert [row.boxes[0].tolist() for row in rows] == [top.tolist(), bottom.tolist()]  # top first
    assert stacked_row(rows, 0) == 1
    assert stacked_row(rows, 1) == 0


def test_a_shorter_line_far_away_or_to_one_side_is_no_second_line() -> None:
    registration = _box(10, 40, 110, 80)
    state_name = _box(30, 22, 90, 38)  # 16 px against the registration's 40: below 0.6, no row at all
    assert stacked_row(text_rows([state_name, registration]), 0) is None
    slogan = _box(20, 84, 100, 108)  # 24 px: a row, but under STACKED_HEIGHT of the registration
    assert stacked_row(text_rows([registration, slogan]), 0) is None
    far = _box(10, 150, 110, 190)  # as tall, three line heights below
    assert stacked_row(text_rows([registration, far]), 0) is None
    aside = _box(150, 84, 250, 124)  # as tall and just below, but not under it
    assert stacked_row(text_rows([registration, aside]), 0) is None
