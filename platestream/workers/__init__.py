"""Workers: consume frame records, recognise plates, emit one alpr_results record per frame."""

__all__: list[str] = []
