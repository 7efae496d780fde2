"""Alert lists and the matcher that raises alerts from vehicle passes."""
