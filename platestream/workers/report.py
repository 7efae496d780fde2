"""A page of an accuracy benchmark's misses that a person can scan in a minute: per miss, the
plate's crop (the annotation in green, what the engine boxed in red), the truth, the read and the
candidates, the truth marked where it was among them."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from platestream.workers.benchmark import Miss
from platestream.workers.engine import decode_image

TRUTH = (60, 200, 60)
READ = (40, 40, 230)


@dataclass
class MissReport:
    folder: Path
    rows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def add(self, group: str, miss: Miss) -> None:
        """Write the miss's crop and remember its row."""
        name = f"{group}-{len(self.rows) + 1:04d}.jpg"
        cv2.imwrite(str(self.folder / name), miss_crop(miss), [cv2.IMWRITE_JPEG_QUALITY, 90])
        candidates = " ".join(
            f"<b>{html.escape(c)}</b>" if c == miss.truth else html.escape(c) for c in miss.candidates[:10]
        )
        read = html.escape(miss.read) if miss.read is not None else "<i>not found</i>"
        if miss.read is None and miss.found:
            read += " (read elsewhere: " + html.escape(", ".join(plate for plate, _ in miss.found)) + ")"
        self.rows.append(
            f"<tr><td>{html.escape(group)}</td><td><img src='{name}'></td><td class=truth>{html.escape(miss.truth)}"
            f"</td><td>{read}</td><td>{candidates}</td><td>{html.escape(miss.image.name)}</td></tr>"
        )

    def write(self, title: str) -> Path:
        page = self.folder / "index.html"
        page.write_text(
            "<!doctype html><meta charset=utf-8><title>" + html.escape(title) + "</title><style>"
            "body{font:14px sans-serif;margin:1em}"
            "td{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:middle}"
            "img{max-height:110px}.truth{font-weight:bold;color:#1a7f37}b{color:#1a7f37}</style>"
            f"<h1>{html.escape(title)}</h1><p>{len(self.rows)} plate{'' if len(self.rows) == 1 else 's'} not read"
            " right. Green: the annotation;"
            " red: what the engine boxed. Bold candidate: the truth was among them.</p><table><tr><th>folder</th>"
            "<th>crop</th><th>truth</th><th>read</th><th>candidates</th><th>image</th></tr>"
            + "".join(self.rows)
            + "</table>\n"
        )
        return page


def miss_crop(miss: Miss) -> cv2.typing.MatLike:
    """The image around the annotated plate (three plate widths), both boxes drawn."""
    image = decode_image(miss.image.read_bytes(), name=str(miss.image))
    x, y, width, height = miss.box
    cv2.rectangle(image, (x, y), (x + width, y + height), TRUTH, 2)
    for _, (fx, fy, fw, fh) in miss.found:
        cv2.rectangle(image, (int(fx), int(fy)), (int(fx + fw), int(fy + fh)), READ, 2)
    margin_x, margin_y = width, height * 2
    top, bottom = max(0, y - margin_y), min(image.shape[0], y + height + margin_y)
    left, right = max(0, x - margin_x), min(image.shape[1], x + width + margin_x)
    return image[top:bottom, left:right]
