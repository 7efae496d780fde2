"""The HTTP layer of `platestream serve` (Starlette, served by uvicorn): routes of the three
dialects, authentication, limits, errors, access logs and metrics. The dialects' shapes are in
`dialects`, the safety rules in `guard`, the engines in `pool`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from kafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from platestream import __version__
from platestream.api import dialects
from platestream.api.dialects import RequestError
from platestream.api.guard import MonthlyUsage, RateLimiter, fetch_image_url, load_tokens
from platestream.api.pipeline import CameraResults, PipelineClient
from platestream.api.pool import EnginePool, PoolBusyError
from platestream.asgi import serve_until_signalled
from platestream.log import get_logger
from platestream.schemas import to_json_dict
from platestream.settings import ApiSettings
from platestream.workers.engine import ImageError, Options, decode_image
from platestream.workers.engine.base import Engine, Image, ImageResult
from platestream.workers.engine.images import ImageTooLargeError
from platestream.workers.results import alpr_results

log = get_logger(__name__)

OPENALPR, CLOUD, SNAPSHOT, OPS = "openalpr", "openalpr_cloud", "platerecognizer", "ops"


class _Metrics:
    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            self.requests = self.latency = self.queue = None
            return
        self.requests = prom.Counter("platestream_api_requests", "API requests.", ["dialect", "status"])
        self.latency = prom.Histogram(
            "platestream_api_latency_seconds", "API request latency.", ["dialect"],
            buckets=(0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
        )  # fmt: skip
        self.queue = prom.Gauge("platestream_api_queue_depth", "Requests waiting for an engine.")


@cache  # Prometheus collectors are registered once per process
def _metrics() -> _Metrics:
    return _Metrics()


class Api:
    """One server's state: its settings, tokens, limits and engines."""

    def __init__(self, settings: ApiSettings, make_engine: Callable[[], Engine]) -> None:
        self.settings = settings
        self.tokens = load_tokens(settings)
        self.rate = RateLimiter(settings.api_rate_limit_per_minute)
        self.usage = MonthlyUsage(settings.api_monthly_calls)
        self.make_engine = make_engine
        self.pool: EnginePool | None = None
        self.pipeline: PipelineClient | None = None
        self.cameras: CameraResults | None = None
        self.metrics = _metrics()

    # authentication and limits --------------------------------------------------------------

    def authenticate(self, token: str | None) -> str:
        """The caller's identity (its token, or "anonymous" without authentication)."""
        if self.tokens is None:
            return token or "anonymous"
        if not token:
            raise RequestError(401, "no token: send Authorization: Token <token> (or secret_key=<key>)")
        if token not in self.tokens:
            raise RequestError(401, "invalid token or secret_key")
        return token

    # recognition ------------------------------------------------------------------------------

    async def _through_pipeline(
        self, pipeline: PipelineClient, encoded: bytes, options: list[Options], camera_id: str | None
    ) -> list[ImageResult]:
        sent = [pipeline.submit(encoded, one, camera_id) for one in options]
        try:
            return list(await asyncio.wait_for(
                asyncio.gather(*(asyncio.wrap_future(future) for _, future in sent)),
                timeout=self.settings.api_timeout_s,
            ))  # fmt: skip
        except TimeoutError:
            raise RequestError(504, f"no reply from the workers within {self.settings.api_timeout_s:.0f} s") from None
        except KafkaError as error:
            raise RequestError(503, f"Kafka did not take the request: {error}") from None
        finally:
            for request_id, _ in sent:
                pipeline.forget(request_id)

    async def image_of(self, data: bytes, field: str) -> Image:
        s = self.settings
        try:
            return await run_in_threadpool(
                decode_image, data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, name=field
            )
        except ImageTooLargeError as error:
            raise RequestError(413, str(error)) from None
        except ImageError as error:
            raise RequestError(400, str(error)) from None

    async def recognize(
        self, images: list[Image], options: list[Options], encoded: bytes, camera_id: str | None = None
    ) -> list[ImageResult]:
        if self.pipeline is not None:
            return await self._through_pipeline(self.pipeline, encoded, options, camera_id)
        assert self.pool is not None, "the engines start with the server"
        try:
            future = self.pool.submit(images, options)
        except PoolBusyError:
            raise RequestError(429, "every engine is busy: try again in a second") from None
        if self.metrics.queue is not None:
            self.metrics.queue.set(self.pool.depth())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.settings.api_timeout_s)
        except TimeoutError:
            future.cancel()  # not started: never recognised
            raise RequestError(504, f"no result within {self.settings.api_timeout_s:.0f} s") from None


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return request.query_params.get("secret_key") or None


async def _form(request: Request, settings: ApiSettings) -> FormData:
    if not request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www-form")):
        return FormData()
    return await request.form(max_files=4, max_fields=200, max_part_size=settings.max_image_bytes * 4 // 3 + 1024)


async def _upload(value: Any, field: str) -> tuple[bytes, str]:
    """A form field's image: an uploaded file, or base64 text in the field."""
    if isinstance(value, UploadFile):
        return await value.read(), value.filename or field
    if isinstance(value, str) and value:
        return dialects.decode_base64(value, field), field
    raise RequestError(400, f"{field} is required: an image file (multipart) or base64 text")


def _handler(api: Api, dialect: str, body: Callable[[Api, Request], Awaitable[Response]]) -> Callable[..., Any]:
    """Runs a dialect's body with its error shape, its access log line and its metrics."""

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await body(api, request)
        except RequestError as error:
            key = "detail" if dialect == SNAPSHOT else "error"
            headers = {"Retry-After": "1"} if error.status == 429 else {}
            response = JSONResponse({key: error.message}, status_code=error.status, headers=headers)
        elapsed = time.perf_counter() - started
        access = log.debug if dialect == OPS else log.info  # probes every few seconds are not traffic
        access("api_request", dialect=dialect, method=request.method, path=request.url.path,
               status=response.status_code, ms=round(elapsed * 1000, 1),
               client=request.client.host if request.client else None)  # fmt: skip
        if api.metrics.requests is not None and api.metrics.latency is not None:
            api.metrics.requests.labels(dialect=dialect, status=str(response.status_code)).inc()
            api.metrics.latency.labels(dialect=dialect).observe(elapsed)
        return response

    return handle


# OpenALPR web service (seed 000) ------------------------------------------------------------------


async def web_service(api: Api, request: Request) -> Response:
    api.authenticate(_token(request))
    form = await _form(request, api.settings)
    data, _ = await _upload(form.get("image"), "image")
    image = await api.image_of(data, "image")
    query = request.query_params
    topn = dialects.integer(query.get("topn", str(api.settings.topn)), "topn")
    if not 1 <= topn <= 1000:
        raise RequestError(400, f"topn must be between 1 and 1000, got {topn}")
    country = query.get("country", api.settings.country).lower()
    if country not in dialects.COUNTRIES:
        raise RequestError(400, f"country {country!r} is not supported: use {', '.join(dialects.COUNTRIES)}")
    options = Options(country=country, state=query.get("state") or api.settings.state, topn=topn)
    (result,) = await api.recognize([image], [options], data)
    record = alpr_results(result, epoch_ms=int(time.time() * 1000))
    return JSONResponse(to_json_dict(record))


# OpenALPR Cloud API (seed 002) -----------------------------------------------------------------


async def cloud(api: Api, request: Request) -> Response:
    started = time.perf_counter()
    form = await _form(request, api.settings)
    params = {key: value for key, value in form.items() if isinstance(value, str)} | dict(request.query_params)
    caller = api.authenticate(params.get("secret_key") or _token(request))
    allowed, window = api.rate.take(caller)
    headers = {
        "X-RateLimit-Limit": str(window.limit),
        "X-Ratelimit-Remaining": str(window.remaining),
        "X-Ratelimit-Reset": str(window.reset_epoch_s),
    }
    if not allowed:
        return JSONResponse({"error": "Temporary rate-limit exceeded"}, status_code=403, headers=headers)
    asked = dialects.cloud_request(params)
    if isinstance(form.get("image"), UploadFile):
        data, _ = await _upload(form.get("image"), "image")
    elif params.get("image_bytes"):
        data = dialects.decode_base64(params["image_bytes"], "image_bytes")
    elif params.get("image_url"):
        data = await run_in_threadpool(fetch_image_url, params["image_url"], api.settings)
    else:
        raise RequestError(400, "one of image (file), image_bytes (base64) or image_url is required")
    image = await api.image_of(data, "image")
    if not api.usage.charge(caller, len(asked.tasks)):
        return JSONResponse({"error": "Monthly usage limit exceeded"}, status_code=402, headers=headers)
    options = dialects.cloud_options(asked)
    results = await api.recognize([image] * len(options), options, data)
    body = dialects.cloud_response(
        asked, results, processing_ms=(time.perf_counter() - started) * 1000, epoch_ms=int(time.time() * 1000),
        credits_used=api.usage.used(caller), credits_total=api.usage.limit, image=data if asked.return_image else None,
    )  # fmt: skip
    return JSONResponse(body, headers=headers)


# Plate Recognizer Snapshot API and SDK (seed 003) ----------------------------------------------


async def snapshot(api: Api, request: Request) -> Response:
    started = time.perf_counter()
    caller = api.authenticate(_token(request))
    allowed, _ = api.rate.take(caller)
    if not allowed:
        raise RequestError(429, "Request was throttled.")
    form = await _form(request, api.settings)
    data, filename = await _upload(form.get("upload"), "upload")

    def text(name: str) -> str | None:
        value = form.get(name)
        return value if isinstance(value, str) else None

    regions = [value for value in form.getlist("regions") if isinstance(value, str)]
    asked = dialects.snapshot_request(regions, text("config"), text("camera_id"), text("timestamp"), text("mmc"))
    image = await api.image_of(data, "upload")
    if not api.usage.charge(caller, 1):
        raise RequestError(402, "Monthly usage limit exceeded")
    options = dialects.snapshot_options(asked, api.settings.country)
    (result,) = await api.recognize([image], [options], data, asked.camera_id)
    if api.cameras is not None and asked.camera_id:
        moment = datetime.fromisoformat(asked.timestamp.replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        api.cameras.publish(result, asked.camera_id, int(moment.timestamp() * 1000))
    body = dialects.snapshot_response(
        result, asked, processing_ms=(time.perf_counter() - started) * 1000, filename=filename,
        calls=api.usage.used(caller), max_calls=api.usage.limit,
    )  # fmt: skip
    return JSONResponse(body)


async def info(api: Api, request: Request) -> Response:
    return JSONResponse({"version": __version__, "license_key": "", "webhooks": []})


async def statistics(api: Api, request: Request) -> Response:
    caller = api.authenticate(_token(request))
    usage = api.usage.period() | {"calls": api.usage.used(caller), "resets_on": api.usage.resets_on()}
    return JSONResponse({"usage": usage, "total_calls": api.usage.limit})


# operations ------------------------------------------------------------------------------------


async def healthz(api: Api, request: Request) -> Response:
    return JSONResponse({"ok": True, "status": "ok"})


async def readyz(api: Api, request: Request) -> Response:
    ready = api.pool is not None or api.pipeline is not None
    return JSONResponse({"ok": ready, "status": "ok" if ready else "starting"}, status_code=200 if ready else 503)


async def metrics(api: Api, request: Request) -> Response:
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    except ImportError:
        return Response(b"install platestream[metrics]\n", status_code=404)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class BodyLimit:
    """413 for a request body over `max_bytes`, announced or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = "detail" if scope["path"].startswith("/v1/plate-reader") else "error"
        response = JSONResponse({key: f"request body over the limit of {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):  # noqa: N818 - a signal inside the middleware, never raised out of it
    pass


def build_app(settings: ApiSettings, make_engine: Callable[[], Engine]) -> ASGIApp:
    api = Api(settings, make_engine)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if settings.api_mode == "pipeline":
            api.pipeline = await run_in_threadpool(PipelineClient, settings)
        else:
            if settings.api_camera_results:
                api.cameras = await run_in_threadpool(CameraResults, settings)
            api.pool = await run_in_threadpool(
                EnginePool, make_engine, engines=settings.api_engines, queue_size=settings.api_queue_size,
                max_batch=settings.api_max_batch,
            )  # fmt: skip
        log.info("api_started", port=settings.api_port, mode=settings.api_mode, engines=settings.api_engines,
                 auth=api.tokens is not None)  # fmt: skip
        try:
            yield
        finally:
            pool, api.pool = api.pool, None
            pipeline, api.pipeline = api.pipeline, None
            if pool is not None:
                await run_in_threadpool(pool.close)
            if pipeline is not None:
                await run_in_threadpool(pipeline.close)
            cameras, api.cameras = api.cameras, None
            if cameras is not None:
                await run_in_threadpool(cameras.close)

    def route(path: str, dialect: str, body: Callable[[Api, Request], Awaitable[Response]],
              methods: list[str]) -> Route:  # fmt: skip
        return Route(path, _handler(api, dialect, body), methods=methods)

    routes = [
        route("/alpr", OPENALPR, web_service, ["POST"]),
        route("/", OPENALPR, web_service, ["POST"]),
        route("/v1/recognize", CLOUD, cloud, ["POST"]),
        route("/v1/plate-reader/", SNAPSHOT, snapshot, ["POST"]),
        route("/info/", SNAPSHOT, info, ["GET"]),
        route("/v1/statistics/", SNAPSHOT, statistics, ["GET"]),
        route("/healthz", OPS, healthz, ["GET"]),
        route("/readyz", OPS, readyz, ["GET"]),
        route("/metrics", OPS, metrics, ["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    limit = settings.max_image_bytes * 4 // 3 + 64 * 1024  # base64 in a field, and the form's own bytes
    return BodyLimit(app, limit)


def serve(settings: ApiSettings, make_engine: Callable[[], Engine]) -> None:
    """Run the API until SIGTERM / SIGINT, then exit 0."""
    serve_until_signalled(build_app(settings, make_engine), settings.api_host, settings.api_port, name="api")


@contextmanager
def running_server(settings: ApiSettings, make_engine: Callable[[], Engine], *, start_s: float = 60.0) -> Iterator[str]:
    """The API on a free loopback port in a thread, for the block (benchmarks and tests); its URL."""
    import threading

    import uvicorn

    from platestream.broker import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(settings, make_engine), host="127.0.0.1", port=port,
                                           access_log=False, log_level="warning", lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the API did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
