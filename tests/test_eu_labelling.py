"""The EU strip found and cut off before a European crop is read for its label: the country letters
in the strip (D, GR) were read as the registration's first characters."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from platestream.training.labelling import cut_strip, eu_strip_width, label_eu, without_strip
from platestream.training.render import PLATE_MAKERS, Assets, plate_text

EU_BLUE = (153, 51, 0)  # BGR


def _plate(*, strip: float, background: tuple[int, int, int] = (245, 245, 245), margin: int = 6) -> np.ndarray:
    """A one-line plate 400x90 with its registration, an EU strip `strip` of its width, in a loose
    crop with a grey margin of `margin` pixels."""
    width, height = 400, 90
    plate = np.full((height, width, 3), background, np.uint8)
    band = int(strip * width)
    if band:
        plate[:, :band] = EU_BLUE
        cv2.putText(plate, "D", (band // 4, int(height * 0.85)), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    cv2.putText(plate, "B MW 4531", (band + 10, 65), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (25, 25, 25), 4)
    crop = np.full((height + 2 * margin, width + 2 * margin, 3), 110, np.uint8)
    crop[margin : margin + height, margin : margin + width] = plate
    return crop


def test_the_strip_of_an_eu_plate_is_found_with_its_width() -> None:
    crop = _plate(strip=0.1)
    assert abs(eu_strip_width(crop) - (6 + 40)) <= 2  # the crop's margin and the strip


def test_a_plate_without_a_strip_or_with_a_blue_ground_has_none() -> None:
    assert eu_strip_width(_plate(strip=0.0)) == 0
    assert eu_strip_width(_plate(strip=0.0, background=(230, 160, 90))) == 0  # a light-blue plate
    assert eu_strip_width(_plate(strip=0.45)) == 0  # blue half the plate wide is no strip


def test_cutting_the_strip_leaves_no_blue_and_keeps_the_registration() -> None:
    crop = _plate(strip=0.1)
    for view in (cut_strip(crop), without_strip(crop)):
        assert view.shape[0] == crop.shape[0]
        assert eu_strip_width(view) == 0
        hsv = cv2.cvtColor(view, cv2.COLOR_BGR2HSV)
        assert ((hsv[..., 0] > 95) & (hsv[..., 1] > 70)).mean() < 0.01
        dark = (view.min(axis=2) < 60).sum()
        assert dark == (crop[:, eu_strip_width(crop) :].min(axis=2) < 60).sum()  # every character's ink
    margin = without_strip(crop).shape[1] - cut_strip(crop).shape[1]
    assert margin == eu_strip_width(crop) // 2
    assert without_strip(_plate(strip=0.0)).shape == _plate(strip=0.0).shape


def test_label_eu_labels_rendered_plates_without_their_strip_letters(tmp_path: Path) -> None:
    """The whole labeller on rendered one-line EU plates whose strip carries a large D: each label
    it keeps is the plate's registration, never with the D before it; a crop named after its plate
    is labelled by its name, and a square (two-line) crop without a name is skipped."""
    assets = Assets.find()  # fonts installed by scripts/ensure-system.sh
    rng = np.random.default_rng(5)
    folder = tmp_path / "eu-unlabelled"
    folder.mkdir()
    texts: dict[str, str] = {}
    while len(texts) < 10:
        text, splits = plate_text("eu", rng)
        plate, _ = PLATE_MAKERS["eu"](text, splits, assets, rng)
        height, width = plate.shape[:2]
        if width < 3 * height or eu_strip_width(plate) == 0:  # a one-line plate with its strip
            continue
        band = int(0.1 * width)
        plate[height // 2 :, :band] = EU_BLUE
        cv2.putText(plate, "D", (band // 5, int(height * 0.9)), cv2.FONT_HERSHEY_DUPLEX, band / 30, (255, 255, 255),
                    max(1, band // 15))  # fmt: skip
        name = f"eu_{len(texts)}.png"
        cv2.imwrite(str(folder / name), cv2.resize(plate, (240, 240 * height // width), interpolation=cv2.INTER_AREA))
        texts[name] = text
    cv2.imwrite(str(folder / "eu2_crop_d_hhnr367.jpg"), _plate(strip=0.1))
    cv2.imwrite(str(folder / "square.png"), np.full((120, 140, 3), 240, np.uint8))

    labels = {label.file: label for label in label_eu(tmp_path)}

    assert labels["eu2_crop_d_hhnr367.jpg"].text == "HHNR367"
    assert labels["eu2_crop_d_hhnr367.jpg"].source == "name"
    assert "square.png" not in labels
    read = {name: label.text for name, label in labels.items() if label.source == "reader"}
    assert not any(text == "D" + texts[name] for name, text in read.items())
    right = [name for name, text in read.items() if text == texts[name]]
    assert len(right) >= 8, (read, texts)
