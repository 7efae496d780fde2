"""The web console (`platestream console`): server-rendered pages (Starlette, Jinja2) over the
store's database. Every page and image needs a login; every form carries the session's CSRF token;
only editors change alert lists, and each change is audited."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from platestream import __version__
from platestream.aggregator.stores import open_store
from platestream.aggregator.stores.database import Database
from platestream.alerts.lists import AlertListError, AlertStore
from platestream.alerts.matching import normalize_plate, parse_entries_csv
from platestream.asgi import serve_until_signalled
from platestream.console.accounts import Accounts
from platestream.console.cameras import CameraWatch
from platestream.console.passes import Cursor, Passes
from platestream.log import get_logger
from platestream.settings import ConsoleSettings

log = get_logger(__name__)

PAGE_SIZE = 50
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
REPORTED_PROBLEMS = 15  # an upload's refused lines listed on the page; the rest counted

Handler = Callable[[Request], Awaitable[Response]]


def _time(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_time(text: str | None) -> int | None:
    """`2026-11-27T10:00` or `2026-11-27 10:00[:00]` (UTC) or a date, as ms; None when empty."""
    if not text:
        return None
    for form in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(text.strip(), form).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a time: use 2026-11-27T10:00 (UTC)")


class Console:
    def __init__(self, settings: ConsoleSettings, cameras: CameraWatch | None = None) -> None:
        self.settings = settings
        open_store(settings).close()  # the passes' tables, if no store writer has made them yet
        self.db = Database(settings)
        self.passes = Passes(self.db)
        self.lists = AlertStore(self.db)
        self.accounts = Accounts(self.db)
        self.cameras = cameras
        folder = resources.files("platestream.console")
        self.templates = Jinja2Templates(directory=str(folder.joinpath("templates")))
        self.templates.env.filters["time"] = _time
        self.templates.env.filters["q"] = lambda text: quote(str(text), safe="")
        self.static = str(folder.joinpath("static"))

    # Plumbing: login, roles, CSRF, rendering.

    def page(self, handler: Handler, *, role: str = "viewer", api: bool = False) -> Handler:
        async def guarded(request: Request) -> Response:
            user = request.session.get("user")
            current = await run_in_threadpool(self.accounts.role, user) if user else None
            if current is None:
                request.session.pop("user", None)
                if api:
                    return JSONResponse({"error": "log in first"}, status_code=401)
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?{urlencode({'next': wanted})}", status_code=303)
            request.state.user, request.state.role = user, current
            if role == "editor" and current != "editor":
                return self.error(request, 403, "Only editors change alert lists; your account is a viewer.")
            if request.method == "POST":
                form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
                if not self._csrf_ok(request, form):
                    return self.error(request, 403, "The form's CSRF token is missing or wrong: reload the page.")
                request.state.form = form
            return await handler(request)

        return guarded

    @staticmethod
    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return str(token)

    @staticmethod
    def _csrf_ok(request: Request, form: FormData) -> bool:
        sent, held = form.get("csrf"), request.session.get("csrf")
        return isinstance(sent, str) and isinstance(held, str) and hmac.compare_digest(sent, held)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        context |= {"user": getattr(request.state, "user", None), "role": getattr(request.state, "role", None),
                    "csrf": self.csrf(request), "version": __version__, "path": request.url.path,
                    "now_ms": int(time.time() * 1000)}  # fmt: skip
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def error(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, "error.html", status_code=status, message=message)

    # Login.

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=request.query_params.get("next", "/"), failed=False)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not self._csrf_ok(request, form):
            return self.error(request, 403, "The form's CSRF token is missing or wrong: reload the page.")
        user, password = str(form.get("username") or ""), str(form.get("password") or "")
        role = await run_in_threadpool(self.accounts.verify, user, password)
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # only this site's pages: no redirect elsewhere
        if role is None:
            log.warning("console_login_failed", user=user[:64])
            return self.render(request, "login.html", status_code=401, next=target, failed=True)
        request.session.clear()
        request.session.update({"user": user, "csrf": secrets.token_urlsafe(32)})
        log.info("console_login", user=user, role=role)
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # Passes.

    async def recent(self, request: Request) -> Response:
        query = request.query_params
        try:
            since, until = _parse_time(query.get("from")), _parse_time(query.get("to"))
        except ValueError as error:
            return self.error(request, 400, str(error))
        camera = query.get("camera") or None
        rows = await run_in_threadpool(lambda: self.passes.recent(
            before=Cursor.parse(query.get("before")), camera=camera, since_ms=since, until_ms=until,
            limit=PAGE_SIZE + 1))  # fmt: skip
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        following = None
        if more:
            cursor = Cursor(rows[-1].epoch_start, rows[-1].group_id).text()
            following = "/?" + urlencode({k: v for k, v in {**dict(query), "before": cursor}.items() if v})
        live = not query.get("before")
        return self.render(request, "passes.html", rows=rows, following=following, live=live, camera=camera or "",
                           since=query.get("from", ""), until=query.get("to", ""))  # fmt: skip

    async def recent_rows(self, request: Request) -> Response:
        """The rows that arrived after `after` (ms), for the live page."""
        after = _whole(request.query_params.get("after"))
        if after is None:
            return PlainTextResponse("after must be a whole number of ms", status_code=400)
        camera = request.query_params.get("camera") or None
        rows = await run_in_threadpool(lambda: self.passes.recent(after_ms=after, camera=camera, limit=PAGE_SIZE))
        return self.render(request, "pass_rows.html", rows=rows)

    async def search(self, request: Request) -> Response:
        query = request.query_params
        plate = normalize_plate(query.get("plate", ""))
        fuzzy = query.get("fuzzy", "1") != "0"
        try:
            since, until = _parse_time(query.get("from")), _parse_time(query.get("to"))
        except ValueError as error:
            return self.error(request, 400, str(error))
        rows = []
        if plate:
            rows = await run_in_threadpool(lambda: self.passes.search(
                plate, fuzzy=fuzzy, camera=query.get("camera") or None, since_ms=since, until_ms=until))  # fmt: skip
        return self.render(request, "search.html", rows=rows, plate=plate, fuzzy=fuzzy, camera=query.get("camera", ""),
                           since=query.get("from", ""), until=query.get("to", ""))  # fmt: skip

    async def one_pass(self, request: Request) -> Response:
        group_id = request.query_params.get("id", "")
        record = await run_in_threadpool(self.passes.one, group_id)
        if record is None:
            return self.error(request, 404, f"No stored pass {group_id!r} (its retention may have ended).")
        images = await run_in_threadpool(lambda: {w: self.passes.image(group_id, w) is not None
                                                  for w in ("plate", "vehicle")})  # fmt: skip
        reads = [{"uuid": uuid, "index": index, **(path or {})} for uuid, index, path in
                 zip(record["uuids"], record["plate_indexes"], _padded(record.get("plate_path"), len(record["uuids"])),
                     strict=True)]  # fmt: skip
        return self.render(request, "pass.html", record=record, group_id=group_id, images=images, reads=reads,
                           drawing=_drawing(record))  # fmt: skip

    async def image(self, request: Request) -> Response:
        which = "plate" if request.url.path.endswith("/plate.jpg") else "vehicle"
        data = await run_in_threadpool(self.passes.image, request.query_params.get("id", ""), which)
        if data is None:
            return PlainTextResponse("no image", status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def cameras_page(self, request: Request) -> Response:
        now = int(time.time() * 1000)
        stored = await run_in_threadpool(self.passes.cameras, now_ms=now)
        agents = self.cameras.snapshot(now_ms=now) if self.cameras else None
        lag = self.cameras.lag() if self.cameras else None
        return self.render(request, "cameras.html", stored=stored, agents=agents, lag=lag, now=now,
                           stale_s=self.settings.console_heartbeat_stale_s)  # fmt: skip

    # Alerts.

    async def alerts_page(self, request: Request, *, status: int = 200, **extra: Any) -> Response:
        extra.setdefault("report", request.session.pop("upload_report", None))
        lists = await run_in_threadpool(self.lists.summaries)
        alerts = [alert for _, alert in await run_in_threadpool(lambda: self.lists.recent_alerts(limit=50))]
        return self.render(request, "alerts.html", status_code=status, lists=lists, alerts=alerts, **extra)

    async def list_page(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        entries = await run_in_threadpool(self.lists.entries, name)
        summary = next((s for s in await run_in_threadpool(self.lists.summaries) if s.name == name), None)
        if summary is None:
            return self.error(request, 404, f"No alert list named {name!r}.")
        return self.render(request, "list.html", summary=summary, entries=entries)

    async def create_list(self, request: Request) -> Response:
        form: FormData = request.state.form
        name = str(form.get("name") or "")
        try:
            await run_in_threadpool(lambda: self.lists.create_list(
                name, lookalike=form.get("lookalike") == "on", user=request.state.user))  # fmt: skip
        except AlertListError as error:
            return await self.alerts_page(request, status=400, problem=str(error))
        return RedirectResponse(f"/alerts/list?name={quote(name.strip(), safe='')}", status_code=303)

    async def delete_list(self, request: Request) -> Response:
        name = str(request.state.form.get("name") or "")
        try:
            await run_in_threadpool(lambda: self.lists.delete_list(name, user=request.state.user))
        except AlertListError as error:
            return await self.alerts_page(request, status=400, problem=str(error))
        return RedirectResponse("/alerts", status_code=303)

    async def add_entry(self, request: Request) -> Response:
        form: FormData = request.state.form
        name, plate = str(form.get("list") or ""), normalize_plate(str(form.get("plate") or ""))
        entries, problems = parse_entries_csv(f"{plate},{_csv_cell(str(form.get('description') or ''))}", name)
        if problems or not entries:
            reason = problems[0].reason if problems else "no plate given"
            return await self.alerts_page(request, status=400, problem=reason)
        try:
            await run_in_threadpool(lambda: self.lists.add_entries(entries, user=request.state.user))
        except AlertListError as error:
            return await self.alerts_page(request, status=400, problem=str(error))
        return RedirectResponse(f"/alerts/list?name={quote(name, safe='')}", status_code=303)

    async def remove_entry(self, request: Request) -> Response:
        form: FormData = request.state.form
        name, plate = str(form.get("list") or ""), str(form.get("plate") or "")
        try:
            await run_in_threadpool(lambda: self.lists.remove_entry(name, plate, user=request.state.user))
        except AlertListError as error:
            return await self.alerts_page(request, status=400, problem=str(error))
        return RedirectResponse(f"/alerts/list?name={quote(name, safe='')}", status_code=303)

    async def upload(self, request: Request) -> Response:
        """CSV lines `plate,description,list`: good lines are added, bad ones reported by number."""
        form: FormData = request.state.form
        upload, default_list = form.get("file"), str(form.get("list") or "").strip()
        if not isinstance(upload, UploadFile):
            return await self.alerts_page(request, status=400, problem="choose a CSV file to upload")
        data = await upload.read()
        if len(data) > MAX_UPLOAD_BYTES:
            return await self.alerts_page(request, status=413, problem=f"the file is over {MAX_UPLOAD_BYTES} bytes")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return await self.alerts_page(request, status=400, problem="the file is not UTF-8 text")
        entries, problems = parse_entries_csv(text, default_list)
        missing_list = [e for e in entries if not e.list_name]
        if missing_list:
            return await self.alerts_page(
                request, status=400, problem="lines without a list name need the list chosen in the form"
            )
        try:
            added = await run_in_threadpool(
                lambda: self.lists.add_entries(entries, user=request.state.user, create_missing=True)
            )
        except AlertListError as error:
            return await self.alerts_page(request, status=400, problem=str(error))
        # Shown once on the page the browser is sent to (so a reload does not upload again); the
        # first lines refused, as many as a cookie holds, and how many more there were.
        request.session["upload_report"] = {
            "name": (upload.filename or "upload")[:80], "added": added, "refused": len(problems),
            "problems": [{"line": p.line, "reason": p.reason[:120], "text": p.text[:60]}
                         for p in problems[:REPORTED_PROBLEMS]],
        }  # fmt: skip
        return RedirectResponse("/alerts", status_code=303)

    async def audit(self, request: Request) -> Response:
        lines = await run_in_threadpool(self.lists.audit)
        return self.render(request, "audit.html", lines=lines)

    async def alerts_since(self, request: Request) -> Response:
        """Alerts raised after `after` (ms), the latest first, for the banner every page shows."""
        after = _whole(request.query_params.get("after"))
        if after is None:
            return JSONResponse({"error": "after must be a whole number of ms"}, status_code=400)
        alerts = await run_in_threadpool(lambda: self.lists.recent_alerts(raised_after_ms=after, limit=20))
        return JSONResponse({"alerts": [{
            "list": a["list_name"], "plate": a["entry"]["plate"], "description": a["entry"]["description"],
            "how": a["match"]["how"], "reading": a["match"]["reading"], "camera_id": a["pass"]["camera_id"],
            "time": _time(a["epoch_time"]), "raised_ms": raised, "pass_id": a["pass"]["pass_id"],
        } for raised, a in alerts]})  # fmt: skip

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def app(self) -> Starlette:
        secret = self.settings.console_session_secret
        if secret is None:
            log.warning("console_session_secret_unset", hint="set PLATESTREAM_CONSOLE_SESSION_SECRET: logins end "
                        "when the console restarts and do not carry across replicas")  # fmt: skip
        key = secret.get_secret_value() if secret else secrets.token_urlsafe(48)
        page = self.page
        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/healthz", self.health),
            Route("/", page(self.recent)),
            Route("/rows", page(self.recent_rows)),
            Route("/search", page(self.search)),
            Route("/pass", page(self.one_pass)),
            Route("/pass/plate.jpg", page(self.image)),
            Route("/pass/vehicle.jpg", page(self.image)),
            Route("/cameras", page(self.cameras_page)),
            Route("/alerts", page(self.alerts_page)),
            Route("/alerts/list", page(self.list_page)),
            Route("/alerts/lists", page(self.create_list, role="editor"), methods=["POST"]),
            Route("/alerts/lists/delete", page(self.delete_list, role="editor"), methods=["POST"]),
            Route("/alerts/entries", page(self.add_entry, role="editor"), methods=["POST"]),
            Route("/alerts/entries/remove", page(self.remove_entry, role="editor"), methods=["POST"]),
            Route("/alerts/upload", page(self.upload, role="editor"), methods=["POST"]),
            Route("/audit", page(self.audit)),
            Route("/api/alerts", page(self.alerts_since, api=True)),
            Mount("/static", StaticFiles(directory=self.static), name="static"),
        ]
        middleware = [Middleware(SessionMiddleware, secret_key=key, session_cookie="platestream_console",
                                 max_age=int(self.settings.console_session_hours * 3600), same_site="strict",
                                 https_only=self.settings.console_secure_cookies)]  # fmt: skip
        app = Starlette(routes=routes, middleware=middleware)
        app.add_middleware(SecurityHeaders)
        return app


class SecurityHeaders:
    """Every answer: no framing, no scripts or styles from elsewhere or inline, no caching of
    pages with plate data by shared caches, no referrer sent off the site."""

    HEADERS = (
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"private, no-store"),
    )  # fmt: skip

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                held = {name for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((n, v) for n, v in self.HEADERS if n not in held)]
            await send(message)

        await self.app(scope, receive, with_headers)


def _whole(text: str | None) -> int | None:
    """A query parameter as a whole number (0 when absent); None when it is not one."""
    if not text:
        return 0
    return int(text) if text.isdigit() else None


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _padded(items: list[Any] | None, length: int) -> list[Any]:
    items = list(items or [])
    return items + [None] * (length - len(items))


def _drawing(record: dict[str, Any]) -> dict[str, Any] | None:
    """What the pass page draws: the frame's size, each read's plate box and the path of their
    centres, and where the vehicle crop sits in the frame."""
    width, height = record.get("best_image_width") or 0, record.get("best_image_height") or 0
    path = record.get("plate_path") or []
    if not width or not height or not path:
        return None
    region = (record.get("best_plate") or {}).get("vehicle_region")
    return {
        "width": width, "height": height, "boxes": path,
        "line": " ".join(f"{p['x'] + p['w'] / 2:.0f},{p['y'] + p['h'] / 2:.0f}" for p in path),
        "vehicle": region,
    }  # fmt: skip


def console_app(settings: ConsoleSettings, cameras: CameraWatch | None = None) -> Starlette:
    return Console(settings, cameras).app()


def serve(settings: ConsoleSettings) -> None:
    """Run the console until SIGTERM / SIGINT, then exit 0."""
    cameras = CameraWatch.start(settings)
    try:
        serve_until_signalled(console_app(settings, cameras), settings.console_host, settings.console_port,
                              name="console")  # fmt: skip
    finally:
        cameras.stop()
