"""The web console: vehicle passes, search, cameras and alert lists."""
