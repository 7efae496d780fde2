"""The OpenALPR adapter: its mapping of recorded OpenALPR output, and the native engine where present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platestream.schemas import from_json, to_json_dict
from platestream.workers.engine.openalpr import image_result
from platestream.workers.results import alpr_results
from tests.factories import SHARED
from tests.test_schemas import seed_json_blocks

WEB_SERVICE = SHARED / "seeds" / "000_6fda98222c39bbe7.txt"
AGENT = SHARED / "seeds" / "004_2802f942be6c874d.txt"
EXAMPLES = Path(__file__).parent / "data" / "examples"  # our own records in the same two forms


@pytest.mark.parametrize(
    "source",
    [WEB_SERVICE, AGENT, EXAMPLES / "web_service_alpr_results.json", EXAMPLES / "agent_alpr_results.json"],
    ids=["seed web service", "seed agent", "own web service", "own agent"],
)
def test_recorded_openalpr_output_maps_field_for_field(source: Path) -> None:
    if not source.exists():
        pytest.skip(f"recorded OpenALPR output not at {source}")
    if source.suffix == ".json":
        recorded = json.loads(source.read_text())
    else:
        (recorded,) = seed_json_blocks(source)
    mapped = alpr_results(image_result(recorded), epoch_ms=recorded["epoch_time"])
    expected = to_json_dict(from_json("alpr_results", recorded))
    got = to_json_dict(mapped)
    for key in ("img_width", "img_height", "processing_time_ms", "regions_of_interest"):
        assert got[key] == expected[key]
    for ours, theirs in zip(got["results"], expected["results"], strict=True):
        kept = {k: v for k, v in theirs.items() if k != "plate_crop_jpeg"}  # crops are not kept
        assert ours == kept


def test_a_binding_that_does_not_match_the_library_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyPI's binding on the open-source library: a function it calls is missing (seen for real with
    OpenALPR 2.3 built from source and `openalpr` 1.1)."""
    import sys
    import types

    import platestream.workers.engine.openalpr as adapter

    class MismatchedAlpr:
        def __init__(self, *args: object) -> None:
            raise AttributeError("libopenalpr.so.2: undefined symbol: openalpr_add_encoded_image_to_batch")

    monkeypatch.setitem(sys.modules, "openalpr", types.SimpleNamespace(Alpr=MismatchedAlpr))
    monkeypatch.setattr(adapter, "_check_native_library", lambda: None)
    monkeypatch.setattr(adapter, "_check_paths", lambda config, runtime_data: None)
    with pytest.raises(adapter.OpenAlprError, match=r"binding does not match the native library .*undefined symbol"):
        adapter.OpenAlprEngine(country="us")


def test_a_missing_native_library_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import platestream.workers.engine.openalpr as adapter

    monkeypatch.setattr(adapter, "NATIVE_LIBRARY", "libplatestream-no-such-library.so")
    with pytest.raises(adapter.OpenAlprError, match="native OpenALPR library cannot be loaded"):
        adapter._check_native_library()


def test_regions_take_plate_recognizers_codes_whichever_engine_reads() -> None:
    from platestream.workers.engine.openalpr import region_code
    from platestream.workers.engine.templates import TEMPLATES

    table = Path(__file__).parent / "data" / "plate-recognizer-region-codes.txt"
    codes = {line.strip() for line in table.read_text().splitlines() if line.strip() and not line.startswith("#")}
    # every region the default engine reports
    assert {region for regions in TEMPLATES.values() for region in regions} <= codes
    # the open-source OpenALPR says a US state bare; Rekor, Plate Recognizer and platestream say us-md
    assert region_code("md", "us") == "us-md"
    assert region_code("us-mo", "us") == "us-mo"
    assert region_code("DE", "eu") == "de"
    assert region_code("", "us") == ""
    assert {region_code(state, "us") for state in ("md", "ca", "tx")} <= codes
