"""Synthetic licence plates for training the plate reader: US state plates, EU plates and
Brazilian plates, each with its label (the registration's characters) and the box of those
characters, rendered flat and then seen the way the detector hands a plate to the reader.

Plate texts come from the region forms the engine checks readings against
(`platestream.workers.engine.templates`), with their characters drawn uniformly so that every
character and every length is seen often. Pure pixels: numpy, OpenCV and Pillow, no framework.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from platestream.errors import PlatestreamError
from platestream.workers.engine.templates import TEMPLATES

Image = NDArray[Any]  # uint8 pixels; Any: numpy's and OpenCV's stubs disagree on dtypes
Rng = np.random.Generator

LETTERS = string.ascii_uppercase
DIGITS = string.digits
# Registration fonts (Debian packages; `scripts/ensure-system.sh --train` installs them) and the
# plainer fonts for the small print around a registration.
REGISTRATION_FONTS = (
    "opendin/OSP-DIN.ttf",
    "bebas-neue/BebasNeue-Regular.otf",
    "bebas-neue/BebasNeue-Bold.otf",
    "bebas-neue/BebasNeue-Book.otf",
    "roadgeek/RG2014B.ttf",
    "roadgeek/RG2014C.ttf",
    "roadgeek/RG2014D.ttf",
    "roadgeek/RG2014E.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf",
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSerifCondensed-Bold.ttf",
)
# OpenCV's own stroke fonts (the plates of the project's test scenes are drawn with them).
HERSHEY_FONTS = {"hershey/duplex": cv2.FONT_HERSHEY_DUPLEX, "hershey/simplex": cv2.FONT_HERSHEY_SIMPLEX,
                 "hershey/triplex": cv2.FONT_HERSHEY_TRIPLEX, "hershey/complex": cv2.FONT_HERSHEY_COMPLEX}  # fmt: skip
PRINT_FONTS = ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSerif-Italic.ttf", "dejavu/DejaVuSansCondensed.ttf")
FONT_ROOTS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
REGIONS = ("us", "eu", "br")
EU_COUNTRY_LETTERS = {"at": "A", "be": "B", "bg": "BG", "ch": "CH", "cz": "CZ", "de": "D", "dk": "DK", "es": "E",
                      "fi": "FIN", "fr": "F", "gb": "GB", "hr": "HR", "hu": "H", "it": "I", "lt": "LT", "lv": "LV",
                      "nl": "NL", "no": "N", "pl": "PL", "pt": "P", "ro": "RO", "rs": "SRB", "se": "S", "si": "SLO",
                      "sk": "SK"}  # fmt: skip
US_WORDS = (
    "SUNSHINE STATE", "LAND OF LINCOLN", "EMPIRE STATE", "GARDEN STATE", "LONE STAR", "GRAND CANYON",
    "AMERICA'S DAIRYLAND", "EXPLORE", "THE GREAT LAKES", "PEACH STATE", "FIRST IN FLIGHT", "OCEAN STATE",
    "TOTAL TOYOTA", "AUTO MALL", "HONDA OF", "COUNTY", "SPORTSMAN'S PARADISE", "VIRGINIA IS FOR LOVERS",
)  # fmt: skip
US_STATES = (
    "CALIFORNIA", "Texas", "NEW YORK", "Florida", "ILLINOIS", "Ohio", "GEORGIA", "Michigan", "ARIZONA",
    "Washington", "COLORADO", "Oregon", "NEVADA", "Utah", "MARYLAND", "Virginia", "Missouri", "IOWA",
)  # fmt: skip
BR_CITIES = ("SAO PAULO", "CURITIBA", "RIO DE JANEIRO", "CAMPINAS", "PR", "SP", "BELO HORIZONTE", "SANTOS")


class AssetError(PlatestreamError):
    """Fonts or plate backgrounds for rendering are missing."""


@dataclass(frozen=True)
class Assets:
    registration_fonts: tuple[Path, ...]
    print_fonts: tuple[Path, ...]
    us_blanks: tuple[Path, ...]

    @classmethod
    def find(cls, blanks: Path | None = None, font_roots: Sequence[Path] = FONT_ROOTS) -> Assets:
        """The fonts installed on this machine (under `font_roots`) and the blank US plates in
        `blanks` (optional: US plates are then drawn on plain backgrounds)."""
        registration = tuple(p for p in _font_paths(REGISTRATION_FONTS, font_roots) if p.exists())
        printing = tuple(p for p in _font_paths(PRINT_FONTS, font_roots) if p.exists())
        if not registration or not printing:
            wanted = ", ".join(REGISTRATION_FONTS[:5])
            raise AssetError(
                f"no plate fonts under {', '.join(map(str, font_roots))} (looked for {wanted}, ...): install "
                "fonts-opendin fonts-bebas-neue fonts-roadgeek fonts-dejavu-extra (scripts/ensure-system.sh --train)"
            )
        found: tuple[Path, ...] = ()
        if blanks is not None and blanks.is_dir():
            found = tuple(sorted(p for p in blanks.iterdir() if p.suffix.lower() in {".jpg", ".png"}))
        return cls(registration + tuple(Path(name) for name in HERSHEY_FONTS), printing, found)


def _font_paths(names: Sequence[str], roots: Sequence[Path]) -> list[Path]:
    return [root / name for name in names for root in roots if (root / name).exists()]


@cache
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@dataclass(frozen=True)
class Sample:
    """One plate as the reader sees it: a crop around the plate, the registration's characters,
    and their box relative to the crop (x1, y1, x2, y2 in 0-1)."""

    image: Image
    text: str
    box: tuple[float, float, float, float]
    region: str


def plate_text(region: str, rng: Rng) -> tuple[str, list[int]]:
    """A registration of `region` (us, eu or br) and where its groups split (indices into the
    text): a form from the engine's tables, or now and then free text (vanity plates), each
    character drawn uniformly from what its position allows."""
    table = TEMPLATES[region]
    if region == "us" and rng.random() < 0.15:
        length = int(rng.integers(2, 9))
        form = "".join(rng.choice(["@", "#"]) for _ in range(length))
    else:
        forms = sorted({form for forms in table.values() for form in forms})
        form = forms[int(rng.integers(len(forms)))]
    letters = LETTERS.replace("O", "") if region == "us" else LETTERS
    text = "".join(
        letters[int(rng.integers(len(letters)))] if c == "@" else DIGITS[int(rng.integers(10))] if c == "#" else c
        for c in form
    )
    return text, _group_splits([c == "#" for c in form], rng)


def _group_splits(digits: Sequence[bool], rng: Rng) -> list[int]:
    """Where a text's groups split (indices into it), from which of its characters are digits:
    where letters turn to digits or back (one or two of those), or in its middle."""
    splits = [i for i in range(1, len(digits)) if digits[i] != digits[i - 1]]
    if not splits and len(digits) >= 5:
        splits = [len(digits) // 2]
    return splits[: 1 + int(rng.random() < 0.3)]


def free_text(rng: Rng) -> tuple[str, list[int]]:
    """A registration of no region's form (a vanity or personalised plate: GWAGEN, BOB4U2): 2-8
    characters, each a letter with a chance drawn per plate (from all digits to all letters), and
    where its groups split (`plate_text`'s rule)."""
    length = int(rng.integers(2, 9))
    letter_chance = float(rng.random())
    text = "".join(LETTERS[int(rng.integers(len(LETTERS)))] if rng.random() < letter_chance
                   else DIGITS[int(rng.integers(10))] for _ in range(length))  # fmt: skip
    return text, _group_splits([c.isdigit() for c in text], rng)


def _text_mask(text: str, font: Path, height: int) -> Image:
    """White-on-black pixels of `text`, cropped to its ink, `height` pixels tall."""
    if font.as_posix() in HERSHEY_FONTS:
        return _fit_ink(_hershey_canvas(text, HERSHEY_FONTS[font.as_posix()], height), height)
    pil_font = _font(font, max(8, int(height * 1.25)))
    left, top, right, bottom = pil_font.getbbox(text)
    canvas = PILImage.new("L", (max(1, int(right - left) + 4), max(1, int(bottom - top) + 4)), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=pil_font)
    return _fit_ink(np.asarray(canvas), height)


def _hershey_canvas(text: str, face: int, height: int) -> Image:
    scale = height / 22.0
    thickness = max(1, round(height / 11))
    (width, text_h), baseline = cv2.getTextSize(text, face, scale, thickness)
    canvas = np.zeros((text_h + baseline + 2 * thickness + 4, width + 2 * thickness + 4), np.uint8)
    cv2.putText(canvas, text, (thickness + 2, text_h + thickness + 2), face, scale, 255, thickness, cv2.LINE_AA)
    return canvas


def _fit_ink(canvas: Image, height: int) -> Image:
    """The canvas cropped to its ink and scaled to `height`, keeping its aspect."""
    ys, xs = np.nonzero(canvas > 40)
    if len(xs) == 0:
        return np.zeros((height, max(1, height // 2)), np.uint8)
    mask = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    width = max(1, round(mask.shape[1] * height / mask.shape[0]))
    return np.asarray(cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _paint(plate: Image, mask: Image, x: int, y: int, colour: Sequence[int]) -> None:
    """Blend `colour` into `plate` through `mask` at (x, y), clipped to the plate."""
    height, width = plate.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + mask.shape[1]), min(height, y + mask.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    alpha = mask[y0 - y : y1 - y, x0 - x : x1 - x, None].astype(np.float32) / 255.0
    region = plate[y0:y1, x0:x1].astype(np.float32)
    plate[y0:y1, x0:x1] = (region * (1 - alpha) + np.asarray(colour, np.float32) * alpha).astype(np.uint8)


def _registration(
    plate: Image, text: str, splits: Sequence[int], box: tuple[int, int, int, int], colour: Sequence[int],
    font: Path, rng: Rng, *, separator: str,
) -> tuple[int, int, int, int]:  # fmt: skip
    """Draw the registration into `box` (x, y, width, height) of the plate, groups parted at
    `splits` by `separator` (gap, dash, dot, emblem), and return the box its ink covers."""
    x, y, width, height = box
    pieces: list[Image] = []
    emblem_at: list[int] = []
    bounds = [0, *splits, len(text)]
    spacing = max(1, int(height * rng.uniform(0.02, 0.12)))
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        group = text[start:end]
        masks = [_text_mask(char, font, height) for char in group]
        for mask in masks:
            pieces.append(mask)
            pieces.append(np.zeros((height, spacing), np.uint8))
        if index < len(bounds) - 2:
            gap = np.zeros((height, max(2, int(height * rng.uniform(0.2, 0.6)))), np.uint8)
            if separator == "dash":
                cv2.rectangle(
                    gap, (1, height // 2 - height // 14), (gap.shape[1] - 2, height // 2 + height // 14), 255, -1
                )
            elif separator == "dot":
                cv2.circle(gap, (gap.shape[1] // 2, height // 2), max(1, height // 12), 255, -1)
            elif separator == "emblem":
                emblem_at.append(sum(p.shape[1] for p in pieces) + gap.shape[1] // 2)
            pieces.append(gap)
    strip = np.hstack(pieces[:-1] if len(pieces) > 1 else pieces)
    scale_x = min(1.0, width / strip.shape[1]) * rng.uniform(0.85, 1.0)
    strip_w = max(1, int(strip.shape[1] * scale_x))
    strip = cv2.resize(strip, (strip_w, height), interpolation=cv2.INTER_AREA)
    left = x + int((width - strip_w) * rng.uniform(0.3, 0.7))
    _paint(plate, strip, left, y, colour)
    for centre in emblem_at:  # a state's silhouette, a seal or a sticker between the groups
        cx = left + int(centre * scale_x)
        radius = max(2, int(height * rng.uniform(0.15, 0.3)))
        points = rng.normal(0, radius * 0.45, (7, 2)) + np.array([cx, y + height // 2])
        hull = cv2.convexHull(points.astype(np.int32))
        cv2.fillConvexPoly(plate, hull, tuple(int(v) for v in rng.integers(0, 255, 3)), lineType=cv2.LINE_AA)
    return left, y, left + strip_w, y + height


def _small_print(
    plate: Image, text: str, font: Path, centre: tuple[int, int], height: int, colour: Sequence[int]
) -> None:
    mask = _text_mask(text, font, max(4, height))
    max_width = plate.shape[1] - 4
    if mask.shape[1] > max_width:
        mask = cv2.resize(mask, (max_width, mask.shape[0]), interpolation=cv2.INTER_AREA)
    _paint(plate, mask, centre[0] - mask.shape[1] // 2, centre[1] - mask.shape[0] // 2, colour)


def _random_word(rng: Rng, words: Sequence[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _ink(rng: Rng) -> tuple[int, int, int]:
    """Registration colours (BGR): navy, black, dark red, dark green, maroon."""
    choices = ((90, 30, 20), (25, 25, 25), (30, 30, 150), (40, 90, 20), (40, 20, 90), (110, 50, 10))
    base = np.asarray(choices[int(rng.integers(len(choices)))]) + rng.integers(-15, 16, 3)
    return tuple(int(v) for v in np.clip(base, 0, 255))  # type: ignore[return-value]


def _us_plate(text: str, splits: Sequence[int], assets: Assets, rng: Rng) -> tuple[Image, tuple[int, int, int, int]]:
    width, height = 300, 150
    if assets.us_blanks and rng.random() < 0.8:
        path = assets.us_blanks[int(rng.integers(len(assets.us_blanks)))]
        blank = cv2.imread(str(path))
        if blank is None:
            raise AssetError(f"{path} is not an image")
        plate = cv2.resize(blank, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        upper, lower = rng.integers(150, 256, 3), rng.integers(150, 256, 3)
        ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        plate = (upper * (1 - ramp) + lower * ramp).astype(np.uint8).repeat(width, 1)
        font = assets.print_fonts[int(rng.integers(len(assets.print_fonts)))]
        _small_print(plate, _random_word(rng, US_STATES), font, (width // 2, int(height * 0.13)), int(height * 0.15),
                     _ink(rng))  # fmt: skip
    registration_fonts = assets.registration_fonts
    font = registration_fonts[int(rng.integers(len(registration_fonts)))]
    char_h = int(height * rng.uniform(0.4, 0.56))
    top = int(height * rng.uniform(0.24, 0.36))
    left_margin = int(width * rng.uniform(0.05, 0.12))
    stacked = rng.random() < 0.25
    if stacked:  # small stacked characters before the registration (not part of it)
        pair = "".join(rng.choice(list(LETTERS + DIGITS), 2))
        ink = _ink(rng)
        print_font = assets.print_fonts[0]
        small = int(char_h * 0.4)
        _small_print(plate, pair[0], print_font, (left_margin + small // 2, top + small // 2), small, ink)
        _small_print(plate, pair[1], print_font, (left_margin + small // 2, top + char_h - small // 2), small, ink)
        left_margin += int(small * 1.6)
    separator = str(rng.choice(["gap", "gap", "dash", "dot", "emblem", "none"]))
    splits = splits if separator != "none" else []
    ink_box = _registration(
        plate, text, splits, (left_margin, top, width - left_margin - int(width * 0.06), char_h), _ink(rng), font, rng,
        separator=separator,
    )  # fmt: skip
    if rng.random() < 0.5:  # renewal stickers in the top corners
        for corner_x in rng.choice([int(width * 0.1), int(width * 0.85)], int(rng.integers(1, 3)), replace=False):
            sticker = (int(corner_x) - 14, 6, int(corner_x) + 14, 26)
            cv2.rectangle(plate, sticker[:2], sticker[2:], tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    if rng.random() < 0.6:  # bolts
        for bolt_x in (int(width * 0.2), int(width * 0.8)):
            cv2.circle(plate, (bolt_x, int(height * 0.09)), 5, (150, 150, 150), -1, cv2.LINE_AA)
            cv2.circle(plate, (bolt_x, int(height * 0.09)), 5, (60, 60, 60), 1, cv2.LINE_AA)
    if rng.random() < 0.4:  # a dealer's frame with its small print
        colour = tuple(int(v) for v in rng.integers(0, 80, 3))
        thickness = int(height * rng.uniform(0.05, 0.1))
        cv2.rectangle(plate, (0, 0), (width - 1, height - 1), colour, thickness)
        band = int(height * rng.uniform(0.12, 0.18))
        cv2.rectangle(plate, (0, height - band), (width - 1, height - 1), colour, -1)
        font = assets.print_fonts[int(rng.integers(len(assets.print_fonts)))]
        _small_print(plate, _random_word(rng, US_WORDS), font, (width // 2, height - band // 2), int(band * 0.7),
                     (230, 230, 230))  # fmt: skip
    elif rng.random() < 0.5:  # a slogan under the registration
        font = assets.print_fonts[int(rng.integers(len(assets.print_fonts)))]
        _small_print(plate, _random_word(rng, US_WORDS), font, (width // 2, int(height * 0.88)), int(height * 0.1),
                     _ink(rng))  # fmt: skip
    return plate, ink_box


def _eu_plate(text: str, splits: Sequence[int], assets: Assets, rng: Rng) -> tuple[Image, tuple[int, int, int, int]]:
    two_lines = rng.random() < 0.12 and len(text) >= 4
    width, height = (280, 200) if two_lines else (520, 112)
    background = (10, 190, 240) if rng.random() < 0.12 else (245, 245, 245)  # yellow (GB, NL rear) or white
    plate = np.full((height, width, 3), background, np.uint8)
    strip = int(width * (0.1 if not two_lines else 0.16)) if rng.random() < 0.85 else 0
    if strip:
        plate[:, :strip] = (153, 51, 0)
        centre = (strip // 2, int(height * 0.3))
        for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            star = (int(centre[0] + strip * 0.3 * np.cos(angle)), int(centre[1] + strip * 0.3 * np.sin(angle)))
            cv2.circle(plate, star, max(1, strip // 18), (0, 204, 255), -1)
        letters = str(rng.choice(list(EU_COUNTRY_LETTERS.values())))
        _small_print(plate, letters, assets.print_fonts[0], (strip // 2, int(height * 0.72)),
                     int(height * (0.25 if not two_lines else 0.14)), (255, 255, 255))  # fmt: skip
    border = (20, 20, 20) if rng.random() < 0.7 else background
    cv2.rectangle(plate, (1, 1), (width - 2, height - 2), border, 3)
    font = assets.registration_fonts[int(rng.integers(len(assets.registration_fonts)))]
    ink = (25, 25, 25) if rng.random() < 0.85 else _ink(rng)
    separator = str(rng.choice(["gap", "gap", "dash", "emblem", "none"]))
    if two_lines:
        cut = splits[0] if splits else len(text) // 2
        line_h = int(height * 0.36)
        box_a = _registration(plate, text[:cut], [], (strip + 8, int(height * 0.1), width - strip - 16, line_h), ink,
                              font, rng, separator="gap")  # fmt: skip
        box_b = _registration(plate, text[cut:], [], (strip + 8, int(height * 0.54), width - strip - 16, line_h), ink,
                              font, rng, separator="gap")  # fmt: skip
        return plate, (min(box_a[0], box_b[0]), box_a[1], max(box_a[2], box_b[2]), box_b[3])
    char_h = int(height * rng.uniform(0.62, 0.74))
    box = (strip + int(width * 0.02), (height - char_h) // 2, width - strip - int(width * 0.04), char_h)
    return plate, _registration(plate, text, splits if separator != "none" else [], box, ink, font, rng,
                                separator=separator)  # fmt: skip


def _br_plate(text: str, splits: Sequence[int], assets: Assets, rng: Rng) -> tuple[Image, tuple[int, int, int, int]]:
    # a text of Brazil's form (ABC1234, Mercosul ABC1D23) picks its plate; a text of no form either
    formed = len(text) == 7
    mercosul = text[4].isalpha() if formed else bool(rng.random() < 0.5)
    width, height = 400, 130
    font = assets.registration_fonts[int(rng.integers(len(assets.registration_fonts)))]
    if mercosul:
        plate = np.full((height, width, 3), 245, np.uint8)
        band = int(height * 0.22)
        plate[:band] = (140, 60, 0)
        _small_print(plate, "BRASIL", assets.print_fonts[0], (width // 2, band // 2), int(band * 0.6), (255, 255, 255))
        ink: tuple[int, int, int] = (20, 20, 20)
        top, char_h = int(height * 0.3), int(height * 0.6)
    else:
        red = rng.random() < 0.3
        plate = np.full((height, width, 3), (40, 40, 170) if red else (170, 170, 170), np.uint8)
        plate = np.clip(plate.astype(np.int16) + rng.integers(-30, 31, 3), 0, 255).astype(np.uint8)
        ink = (235, 235, 235) if red else (25, 25, 25)
        _small_print(plate, _random_word(rng, BR_CITIES), assets.print_fonts[0], (width // 2, int(height * 0.12)),
                     int(height * 0.12), ink)  # fmt: skip
        top, char_h = int(height * 0.26), int(height * 0.62)
    cv2.rectangle(plate, (1, 1), (width - 2, height - 2), (30, 30, 30), 3)
    separator = "gap" if mercosul else str(rng.choice(["dash", "dot", "gap"]))
    box = _registration(plate, text, [3] if formed else splits, (int(width * 0.04), top, int(width * 0.92), char_h),
                        ink, font, rng, separator=separator)  # fmt: skip
    return plate, box


PLATE_MAKERS = {"us": _us_plate, "eu": _eu_plate, "br": _br_plate}


def render_sample(region: str, assets: Assets, rng: Rng) -> Sample:
    """A rendered plate of `region`, mounted, photographed and cropped as the detector would."""
    text, splits = plate_text(region, rng)
    plate, ink = PLATE_MAKERS[region](text, splits, assets, rng)
    image, box = photograph(plate, ink, rng)
    return Sample(image, text, box, region)


def _background(height: int, width: int, rng: Rng) -> Image:
    colour = rng.integers(0, 256, 3)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = colour
    for _ in range(int(rng.integers(0, 5))):  # bumper edges, lamps, shadows
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.rectangle(canvas, p1, p2, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
    texture = rng.normal(0, rng.uniform(2, 12), (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    stretched = np.asarray(cv2.resize(texture, (width, height), interpolation=cv2.INTER_NEAREST), np.float32)
    return np.asarray(np.clip(canvas + stretched, 0, 255), dtype=np.uint8)


def photograph(
    plate: Image, ink: tuple[int, int, int, int], rng: Rng
) -> tuple[Image, tuple[float, float, float, float]]:
    """The plate mounted on a vehicle, seen at an angle, cropped loose or tight as a detector's
    box would be, at a resolution from a distant camera's to a near one's, with blur, noise,
    uneven light, occlusion and JPEG. Returns the crop and the characters' box relative to it."""
    height, width = plate.shape[:2]
    margin_x, margin_y = width // 3, height
    canvas = _background(height + 2 * margin_y, width + 2 * margin_x, rng)
    canvas[margin_y : margin_y + height, margin_x : margin_x + width] = plate
    corners = (np.array([[0, 0], [width, 0], [width, height], [0, height]]) + np.array([margin_x, margin_y])).astype(
        np.float32
    )
    # perspective: the plate's corners jittered, then rotated a little
    jitter = rng.normal(0, 0.04, (4, 2)) * (width, height)
    angle = np.deg2rad(rng.normal(0, 4))
    centre = corners.mean(0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    moved = ((corners + jitter - centre) @ rotation.T + centre).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(corners, moved)
    canvas = cv2.warpPerspective(canvas, matrix, (canvas.shape[1], canvas.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    ink_corners = np.array([[ink[0], ink[1]], [ink[2], ink[1]], [ink[2], ink[3]], [ink[0], ink[3]]], np.float32)
    shifted = (ink_corners + np.array([margin_x, margin_y])).astype(np.float32)
    ink_moved = cv2.perspectiveTransform(shifted[None], matrix)[0]
    # the detector's box: the plate's box, loose or tight
    x1, y1 = moved.min(0)
    x2, y2 = moved.max(0)
    plate_w, plate_h = x2 - x1, y2 - y1
    # a detector's box is tight or loose, and the engine widens it (reader.PAD_X, PAD_Y) before reading
    x1 -= plate_w * rng.uniform(-0.02, 0.2)
    x2 += plate_w * rng.uniform(-0.02, 0.2)
    y1 -= plate_h * rng.uniform(0.0, 0.45)
    y2 += plate_h * rng.uniform(0.0, 0.45)
    ink_x1, ink_y1 = ink_moved.min(0) - 1
    ink_x2, ink_y2 = ink_moved.max(0) + 1
    left, top = max(0, int(min(x1, ink_x1))), max(0, int(min(y1, ink_y1)))
    right, bottom = min(canvas.shape[1], int(max(x2, ink_x2))), min(canvas.shape[0], int(max(y2, ink_y2)))
    crop = canvas[top:bottom, left:right]
    crop_h, crop_w = crop.shape[:2]
    ix1, iy1 = ink_moved.min(0) - (left, top)
    ix2, iy2 = ink_moved.max(0) - (left, top)
    box = (float(np.clip(ix1 / crop_w, 0, 1)), float(np.clip(iy1 / crop_h, 0, 1)),
           float(np.clip(ix2 / crop_w, 0, 1)), float(np.clip(iy2 / crop_h, 0, 1)))  # fmt: skip
    return degrade(crop, rng), box


def degrade(crop: Image, rng: Rng, *, strength: float = 1.0) -> Image:
    """A camera's faults: low resolution, blur, light and shadow, noise, occlusion, JPEG."""
    crop = crop.copy()
    height, width = crop.shape[:2]
    target_w = int(np.clip(rng.lognormal(np.log(120), 0.45), 44, 320))  # plates far to near
    if target_w < width:
        small = (target_w, max(8, round(height * target_w / width)))
        crop = cv2.resize(crop, small, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5 * strength:
        sigma = rng.uniform(0.3, 1.6 if target_w > 90 else 0.9)
        crop = cv2.GaussianBlur(crop, (0, 0), sigma)
    if rng.random() < 0.15 * strength:  # motion blur
        length = int(rng.integers(2, 6))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        crop = cv2.filter2D(crop, -1, kernel)
    work = crop.astype(np.float32)
    contrast = rng.uniform(0.6, 1.3) if rng.random() < 0.7 * strength else 1.0
    brightness = rng.uniform(-45, 45) if rng.random() < 0.7 * strength else 0.0
    work = (work - 128) * contrast + 128 + brightness
    if rng.random() < 0.3 * strength:  # a shadow across part of the plate
        h, w = work.shape[:2]
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        direction = rng.normal(0, 1, 2)
        edge = (xs - w * rng.uniform(0.2, 0.8)) * direction[0] + (ys - h * rng.uniform(0.2, 0.8)) * direction[1]
        work *= np.where(edge > 0, rng.uniform(0.45, 0.8), 1.0).astype(np.float32)[:, :, None]
    if rng.random() < 0.25 * strength:  # colour cast
        work *= rng.uniform(0.8, 1.2, 3)
    if rng.random() < 0.6 * strength:
        work += rng.normal(0, rng.uniform(1, 8), work.shape).astype(np.float32)
    crop = np.clip(work, 0, 255).astype(np.uint8)
    if rng.random() < 0.08 * strength:
        _occlude(crop, rng)
    if rng.random() < 0.2:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.7 * strength:
        quality = int(rng.integers(20, 95))
        ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            crop = decoded
    return crop


def _occlude(crop: Image, rng: Rng) -> None:
    """Something in front of an edge of the plate: a tow bar, a bumper, a bicycle rack."""
    h, w = crop.shape[:2]
    side = int(rng.integers(4))
    size = rng.uniform(0.05, 0.15)
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if side == 0:
        cv2.rectangle(crop, (0, 0), (int(w * size), h), colour, -1)
    elif side == 1:
        cv2.rectangle(crop, (w - int(w * size), 0), (w, h), colour, -1)
    else:
        y = 0 if side == 2 else h - int(h * size * 1.5)
        cv2.rectangle(crop, (0, y), (w, y + int(h * size * 1.5)), colour, -1)


def pack_fonts(out: Path, font_roots: Sequence[Path] = FONT_ROOTS) -> int:
    """Copy the fonts the renderer uses into `out` (same sub-folders), for a machine without them."""
    import shutil

    copied = 0
    for name in (*REGISTRATION_FONTS, *PRINT_FONTS):
        for path in _font_paths((name,), font_roots)[:1]:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / name)
            copied += 1
    return copied
