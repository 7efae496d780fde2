"""Getting a frame's image bytes: inline, or from the S3 object the frame references."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from platestream.errors import MissingExtraError, PlatestreamError


class FetchError(PlatestreamError):
    """The image a frame references cannot be had: S3 refused the request for good."""

    reason = "s3_request_failed"


class S3UnavailableError(FetchError):
    """S3 did not answer, or failed on its side (5xx, throttling, a connection error), after the
    client's retries: an outage to wait out, not a frame to give up on."""

    reason = "s3_unavailable"


class S3NotConfiguredError(FetchError):
    reason = "s3_not_configured"


class ObjectMissingError(FetchError):
    reason = "s3_object_missing"


class ObjectForbiddenError(FetchError):
    reason = "s3_access_denied"


class ObjectChangedError(FetchError):
    reason = "s3_object_changed"


_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "404", "NotFound"}
_FORBIDDEN = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
_CHANGED = {"PreconditionFailed", "412"}
_UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                "ThrottlingException", "RequestTimeTooSkewed"}  # fmt: skip


def reference_uri(ref: Mapping[str, Any]) -> str:
    uri = f"s3://{ref['bucket']}/{ref['key']}"
    return uri + (f"?versionId={ref['version_id']}" if ref.get("version_id") else "")


class S3Fetcher:
    """Reads objects with bounded retries (botocore's standard mode: backoff with jitter)."""

    def __init__(
        self, *, endpoint_url: str | None, region: str | None, max_attempts: int, timeout_s: float, max_bytes: int
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingExtraError("boto3", "s3") from None
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            max_pool_connections=32,
        )
        self._client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        self._max_bytes = max_bytes

    def get(self, ref: Mapping[str, Any]) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        uri = reference_uri(ref)
        request: dict[str, Any] = {"Bucket": ref["bucket"], "Key": ref["key"]}
        if ref.get("version_id"):
            request["VersionId"] = ref["version_id"]
        if ref.get("etag"):
            request["IfMatch"] = ref["etag"]
        try:
            response = self._client.get_object(**request)
            length = int(response.get("ContentLength") or 0)
            if length > self._max_bytes:
                response["Body"].close()
                from platestream.workers.engine import ImageTooLargeError

                raise ImageTooLargeError(f"{uri} is {length} bytes, over the limit of {self._max_bytes}")
            body: bytes = response["Body"].read(self._max_bytes + 1)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            for codes, kind in ((_MISSING, ObjectMissingError), (_FORBIDDEN, ObjectForbiddenError),
                                (_CHANGED, ObjectChangedError)):  # fmt: skip
                if code in codes or status in codes:
                    raise kind(f"{uri}: {code or status}: {error}") from None
            if code in _UNAVAILABLE or status.startswith("5"):
                raise S3UnavailableError(f"{uri}: {code or status} after retries: {error}") from None
            raise FetchError(f"{uri}: {code or status}: {error}") from None
        except BotoCoreError as error:
            raise S3UnavailableError(f"{uri}: {type(error).__name__} after retries: {error}") from None
        return body
