"""platestream's shared plumbing: settings, Kafka clients, logging, the local broker and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("platestream")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
