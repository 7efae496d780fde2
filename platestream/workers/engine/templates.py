"""Plate text patterns per region, as OpenALPR's postprocess templates use them.

A pattern is a string of `@` (letter), `#` (digit), `?` (either) and literal characters. A
country groups its regions; `region_fits(texts, table)` says which regions, if any, each reading fits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

# EU: the common current formats, without separators (what a plate's characters give).
_EU = {
    "at": ["@#####", "@@###@", "@@####", "@@@###@", "@####@", "@@##@@@"],
    "be": ["#@@@###", "@@@###"],
    "bg": ["@####@@", "@@####@@"],
    "ch": ["@@#####", "@@######", "@@####"],
    "cz": ["#@#####", "#@@####", "#@######"],
    "de": ["@@####", "@@@####", "@@@@###", "@@@@@###", "@@@###", "@@@@####", "@####", "@@###", "@#####", "@@#####"],
    "dk": ["@@#####"],
    "es": ["####@@@", "@####@@", "@@####@@"],
    "fi": ["@@@###", "@@##"],
    "fr": ["@@###@@"],
    "gb": ["@@##@@@", "@###@@@", "@@@###@"],
    "hr": ["@@###@@", "@@####@@", "@@###@"],
    "hu": ["@@@###", "@@@@###"],
    "it": ["@@###@@"],
    "lt": ["@@@###"],
    "lv": ["@@####", "@@###"],
    "nl": ["@@##@@", "##@@@#", "#@@@##", "@@@##@", "@##@@@", "##@@##", "@@####", "####@@", "@@@@##", "#@@###"],
    "no": ["@@#####"],
    "pl": ["@@#####", "@@####@", "@@###@@", "@@@####", "@@@###@", "@@@#@@#", "@@@##@@", "@@#@###"],
    "pt": ["##@@##", "@@####", "##@@##", "@@##@@", "##@@@@"],
    "ro": ["@@##@@@", "@###@@@", "@@###@@@"],
    "rs": ["@@###@@", "@@####@@"],
    "se": ["@@@###", "@@@##@"],
    "si": ["@@@@###", "@@##@@@", "@@@##@@"],
    "sk": ["@@###@@", "@@@###", "@@@@###"],
}

# US: common passenger formats per state; many states share them. Vanity plates fit none.
_US_COMMON = ["###@@@", "@@@###", "@@@####", "#@@@###", "###@###", "##@@###", "#@#####", "@@#####", "####@@", "######"]
_US = {
    "ca": ["#@@@###"],
    "tx": ["@@@####", "@@#@###", "###@@@"],
    "ny": ["@@@####"],
    "fl": ["@@@@##", "###@@@", "@@@@###", "@##@@@", "###@@@@"],
    "il": ["@@#####", "@#####"],
    "pa": ["@@@####"],
    "oh": ["@@@####"],
    "mi": ["@@@####", "#@@@##", "@@@###"],
    "ga": ["@@@####", "###@@@"],
    "nc": ["@@@####"],
    "nj": ["@##@@@", "@@@##@"],
    "va": ["@@@####", "###@@@"],
    "wa": ["@@@####", "###@@@"],
    "ma": ["#@@@##", "###@@#", "#@@###"],
    "az": ["@@@####", "###@@@"],
    "mo": ["@@#@#@", "@@#@#@#", "#@@###", "###@@@"],
    "md": ["#@@####", "@@@####"],
    "co": ["###@@@", "@@@###"],
    "mn": ["###@@@"],
    "ky": ["###@@@"],
    "ok": ["@@@###"],
    "or": ["###@@@"],
    "ct": ["@@#####", "#@@@@#", "###@@@"],
    "ia": ["@@@###"],
    "nv": ["###@##", "#@@###"],
    "ks": ["###@@@"],
    "ut": ["@###@@", "#@@@##"],
    "ne": ["@@@###", "##@###"],
    "ms": ["@@@###"],
    "ar": ["###@@@"],
    "nm": ["@@@###", "###@@@"],
    "wi": ["###@@@", "@@@####"],
    "in": ["###@", "###@@", "###@@@"],
    "tn": ["@##@#@", "###@@@"],
    "sc": ["@@@###"],
    "al": ["##@###@", "#@#####"],
    "la": ["@@@###"],
    "id": ["#@#####", "#@@####"],
    "wv": ["#@@###", "@@@###"],
    "me": ["####@@"],
    "nh": ["###@###", "#######"],
    "ri": ["@@###", "######"],
    "vt": ["@@@###"],
    "de": ["######", "#####"],
    "mt": ["#@####@", "######@"],
    "wy": ["######", "#####"],
    "sd": ["#@@###"],
    "nd": ["###@@@"],
    "hi": ["@@@###"],
    "ak": ["@@@###"],
}

_BR = {"br": ["@@@####", "@@@#@##"]}  # the old format and Mercosul

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "us": {f"us-{state}": patterns + _US_COMMON for state, patterns in _US.items()},
    "eu": _EU,
    "br": _BR,
}
COUNTRY_OF_REGION = {region: country for country, regions in TEMPLATES.items() for region in regions}

_TOKEN = {"@": "[A-Z]", "#": "[0-9]", "?": "[A-Z0-9]"}


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(_TOKEN.get(char, re.escape(char)) for char in pattern) + r"\Z")


def regions_for(country: str, state: str | None = None, regions: Iterable[str] = ()) -> dict[str, list[str]]:
    """The templates in play: a state or Plate Recognizer regions narrow the country's set."""
    wanted = [r.lower() for r in regions]
    if state:
        wanted.append(state.lower())
    table: dict[str, list[str]] = {}
    for code in wanted or []:
        for known_country, known in TEMPLATES.items():
            for name in (code, f"{known_country}-{code}"):
                if name in known:
                    table[name] = known[name]
        if code in TEMPLATES:  # a whole country given as a region, e.g. "br"
            table.update(TEMPLATES[code])
    if table:
        return table
    return dict(TEMPLATES.get(country.lower(), {}))


def region_fits(texts: Iterable[str], table: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """For each text, the regions whose patterns it fits (in table order), each with the share of
    the region's patterns that it fits: how likely a plate of that region is to look like it."""
    distinct = {region: set(patterns) for region, patterns in table.items()}
    every = set().union(*distinct.values()) if distinct else set()
    fits: dict[str, dict[str, float]] = {}
    for text in texts:
        fitting = {pattern for pattern in every if _compile(pattern).match(text)}
        fits[text] = {
            region: len(fitting & patterns) / len(patterns)
            for region, patterns in distinct.items()
            if fitting and not fitting.isdisjoint(patterns)
        }
    return fits


def shape(text: str) -> str:
    return "".join("#" if c.isdigit() else "@" if c.isalpha() else c for c in text)
