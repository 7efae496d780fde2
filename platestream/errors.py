"""The project's exceptions: one root, a few precise kinds. Messages quote the bad value."""


class PlatestreamError(Exception):
    """Root of every error platestream raises on purpose."""


class ConfigError(PlatestreamError):
    """A setting is missing or has a value that cannot work."""


class SchemaError(PlatestreamError):
    """A record does not fit its Avro contract; the message names the field."""


class BrokerError(PlatestreamError):
    """The local Kafka broker could not be fetched, started or reached."""


class MissingExtraError(PlatestreamError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module!r} is not installed: pip install 'platestream[{extra}]'")
        self.module = module
        self.extra = extra
