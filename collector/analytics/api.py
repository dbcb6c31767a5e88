"""The HTTP API of `collector serve` (ANALYTICS.md): the dashboard's metrics, the raw export,
users' deletions and the live viewer count, with the dashboard page itself at `/`.

Every `/v1/` route wants `Authorization: Bearer <admin token>` and answers only for the token's
projects (401 without a known token, 403 for another project). With no token configured it
answers anyone, so it listens on loopback only. Every error is JSON (`{"error", "message"}`,
and `parameter` for a 400), never a traceback: one middleware turns whatever a handler raised
into its status, and anything unexpected into a 500 logged here.

Queries run in worker threads, never on the event loop that serves ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import msgspec
from aiohttp import web

from . import export
from .live import Live
from .query import BadRequest, int_param, parse
from .sink import StoreSink

log = logging.getLogger("collector.analytics.api")

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
LIVE_SECONDS = 1.0  # how often the live count is sent, at least
LIVE_SOONEST = 0.2  # and at most, when viewers join or leave
EXPORT_THREADS = 2  # exports read and formatted at once; more wait their turn, span by span
_json = msgspec.json.Encoder(decimal_format="number")
_USER_PATH = re.compile(r"/v1/users/([^/?]+)/events")
_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "too_large", 503: "unavailable"}


class Refused(Exception):
    """An answer other than 400: status, error code, message."""

    def __init__(self, status: int, message: str, error: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error = status, message, error or _CODES[status]


def reply(body, status: int = 200, headers=None) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, headers=headers,
                        content_type="application/json")


def host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http_listen: {address!r} is not host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config) -> None:
    """Refuse (ValueError) an API open to anyone on a non-loopback address."""
    if config.http_listen and not config.admin_tokens:
        host, _ = host_port(config.http_listen)
        if not is_loopback(host):
            raise ValueError(f"http_listen {config.http_listen} is not a loopback address and no "
                             "admin_tokens are configured: the API would answer anyone; "
                             "configure admin_tokens or listen on 127.0.0.1")


async def _first(*events: asyncio.Event) -> None:
    """Until one of the events is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except BadRequest as exc:
        return reply(exc.body(), 400)
    except Refused as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return reply({"error": exc.error, "message": exc.message}, exc.status, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return reply({"error": _CODES.get(exc.status, f"http_{exc.status}"),
                      "message": f"{exc.reason}: {request.method} {request.path}"}, exc.status, headers)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # noqa: BLE001 - said as a 500, told in full only to the log
        log.exception("HTTP %s %s failed", request.method, request.path)
        return reply({"error": "internal", "message": "internal error (the collector's log "
                      "has the details)"}, 500)


class Api:
    """The HTTP API of a running `collector.server.Service`."""

    def __init__(self, service):
        self.service = service
        self.config = service.config
        # each token's digest -> its projects: compared in constant time, whatever the length
        self.tokens = [(hashlib.sha256(t.encode()).digest(), frozenset(p))
                       for t, p in self.config.admin_tokens.items()]
        self.store = service.store
        loaded = next((d for d in service.deliveries if isinstance(d.sink, StoreSink)), None)
        self.live = (Live(service.log, self.store, lambda: loaded.position)
                     if loaded is not None else None)
        # the threads exports read and format in: a few, for good (each new thread would get a
        # heap of its own that keeps what it freed), and spans of one export one after another
        self.exports = ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="export")
        self.closing = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/", self.page)
        r.add_static("/static/", STATIC)
        r.add_get("/v1/analytics/viewers/live", self.live_viewers)
        r.add_get("/v1/analytics/events", self.events)
        try:  # the metrics' module is written apart; without it the other routes still serve
            from .metrics import METRICS
        except ModuleNotFoundError as exc:
            if exc.name != "collector.analytics.metrics":
                raise
            log.error("HTTP API: no metrics (collector/analytics/metrics.py is missing)")
            METRICS = {}
        self.metrics = METRICS
        for name in METRICS:
            r.add_get(f"/v1/analytics/{name}", self.metric)
        r.add_delete("/v1/users/{tail:.+}", self.delete_user)
        r.add_post("/v1/deletions/purge", self.purge)
        r.add_get("/v1/deletions/{id}", self.deletion)
        return app

    async def start(self) -> None:
        host, port = host_port(self.config.http_listen)
        context = None
        if self.config.tls.cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.config.tls.cert, self.config.tls.key)
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host or None, port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise OSError(f"http_listen {self.config.http_listen}: cannot listen ({exc.strerror or exc})") from None
        self.port = self.runner.addresses[0][1]
        log.info("HTTP API on %s (port %d%s)%s", self.config.http_listen, self.port,
                 ", TLS" if context else "", "" if self.tokens else
                 ": loopback only, no admin_tokens configured (anyone on this host may read)")

    async def stop(self) -> None:
        self.closing.set()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.live is not None:
            await self.live.stop()
        self.exports.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ common

    def projects(self, request: web.Request) -> frozenset[int] | None:
        """The projects the request's token covers; None: every project (no tokens configured)."""
        if not self.tokens:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Refused(401, "an admin token is required: Authorization: Bearer <token>")
        digest = hashlib.sha256(given.strip().encode()).digest()
        found = None
        for known, projects in self.tokens:  # every one compared: the time tells nothing
            if hmac.compare_digest(known, digest):
                found = projects
        if found is None:
            raise Refused(401, "unknown admin token")
        return found

    @staticmethod
    def allow(projects: frozenset[int] | None, project: int) -> None:
        if projects is not None and project not in projects:
            raise Refused(403, f"this token may not read project {project}")

    @staticmethod
    def params(request: web.Request, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
        """The query string as a dict: a parameter given twice, or one not `allowed`, is a 400."""
        out: dict[str, str] = {}
        for name, value in request.query.items():
            if name in out:
                raise BadRequest("repeated_parameter", f"{name} is given more than once", name)
            if allowed is not None and name not in allowed:
                raise BadRequest("unknown_parameter", f"unknown parameter {name!r}; this endpoint "
                                 f"takes {', '.join(sorted(allowed)) or 'none'}", name)
            out[name] = value
        return out

    def query(self, request, *, extra=(), needs_from=False):
        """(projects, Query) of an analytics request, its project allowed."""
        projects = self.projects(request)
        params = self.params(request)
        # the project first: a token without it is refused before it learns what else is missing
        self.allow(projects, parse(params, projects, extra=extra).project_id)
        q = parse(params, projects, extra=extra, needs_from=needs_from)
        if self.store is None:
            raise Refused(503, "the analytics store is off ([analytics] store = \"\")")
        return projects, q

    # ------------------------------------------------------------------ routes

    async def healthz(self, request):
        return reply({"status": "stopping" if self.service.stopping else "ok"},
                     503 if self.service.stopping else 200)

    async def page(self, request):
        return web.FileResponse(os.path.join(STATIC, "index.html"),
                                headers={"Cache-Control": "no-cache"})

    async def metric(self, request):
        fn, extra, needs_from = self.metrics[request.path.rsplit("/", 1)[1]]
        _, q = self.query(request, extra=tuple(extra), needs_from=needs_from)
        return reply(await asyncio.to_thread(fn, self.store, q))

    async def events(self, request):
        _, q = self.query(request, extra=("userId", "action", "format"))
        fmt = q.extra.get("format", "jsonl")
        if fmt not in export.FORMATS:
            raise BadRequest("bad_parameter", f"format: {fmt!r} is not one of "
                             f"{', '.join(export.FORMATS)}", "format")
        for name in ("userId", "action"):
            if q.extra.get(name) == "":
                raise BadRequest("bad_parameter", f"{name} is empty", name)
        loop, worker = asyncio.get_running_loop(), self.exports
        pattern = q.extra.get("action")
        actions = None if pattern is None else await loop.run_in_executor(
            worker, export.actions, self.store, q, pattern)
        chunks = export.chunks(fmt, export.pages(self.store, export.condition(self.store, q, actions)))
        content_type, ext = export.FORMATS[fmt]
        resp = web.StreamResponse(headers={
            "Content-Type": content_type, "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="events-{q.project_id}.{ext}"'})
        resp.enable_chunked_encoding()
        size = 0
        reading = None
        ended = "done"
        started = time.monotonic()
        try:
            while True:
                if request.transport is None or request.transport.is_closing():
                    ended = "the client went away"
                    break
                reading = loop.run_in_executor(worker, next, chunks, None)
                chunk = await reading
                if chunk is None:
                    break
                if not resp.prepared:
                    await resp.prepare(request)
                await resp.write(chunk)
                size += len(chunk)
            if not resp.prepared:
                await resp.prepare(request)
            if ended == "done":
                await resp.write_eof()
        except ConnectionError:
            ended = "the client went away"
        except Exception:
            if not resp.prepared:
                raise
            ended = "failed"  # cut short: no last chunk, so the client sees it is incomplete
            log.exception("export of project %d failed after %d bytes", q.project_id, size)
            if request.transport is not None:
                request.transport.close()
        finally:  # no span is read after this one (a span is one query: nothing stays open)
            if reading is None or reading.done():
                chunks.close()
            else:
                reading.add_done_callback(lambda _: chunks.close())
        log.info("export of project %d (%s): %s after %d bytes in %.1f s", q.project_id, fmt,
                 ended, size, time.monotonic() - started)
        return resp

    async def live_viewers(self, request):
        projects = self.projects(request)
        params = self.params(request, ("projectId", "broadcastId", "idle"))
        q = parse(params, projects, extra=("idle",))
        self.allow(projects, q.project_id)
        broadcast = q.filters.get("broadcastId")
        if broadcast is None:
            raise BadRequest("missing_parameter", "broadcastId is required", "broadcastId")
        idle_ms = int_param(q, "idle", 600) * 1000
        if self.live is None:
            raise Refused(503, "the analytics store is off ([analytics] store = \"\")")
        hidden = self.service.deletions.hidden if self.service.deletions is not None else {}
        async with self.live.watch(q.project_id, broadcast) as board:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
            await resp.prepare(request)
            try:
                while not self.closing.is_set():
                    board.changed.clear()
                    t = time.time_ns() // 1_000_000
                    n = board.watching(t, idle_ms, hidden, q.project_id)
                    await resp.write(b"data: " + _json.encode({"t": t, "viewers": n}) + b"\n\n")
                    # the next one when a viewer joins or leaves (idle viewers drop out with
                    # time: once a second anyway), never sooner than LIVE_SOONEST
                    await asyncio.sleep(LIVE_SOONEST)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(_first(self.closing, board.changed),
                                               LIVE_SECONDS - LIVE_SOONEST)
            except ConnectionError:
                pass
        return resp

    def deletions(self):
        if self.service.deletions is None:
            raise Refused(503, "deletions need the analytics store ([analytics] store is off)")
        return self.service.deletions

    async def delete_user(self, request):
        # the user id from the raw path, unquoted once: it may hold `/`, `%` and any character
        match = _USER_PATH.fullmatch(request.raw_path.partition("?")[0])
        if match is None:
            raise Refused(404, f"no such route: {request.method} {request.path} "
                          "(DELETE /v1/users/{userId}/events)")
        try:
            user = urllib.parse.unquote(match.group(1), errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("bad_parameter", "userId is not percent-encoded UTF-8", "userId") from None
        projects = self.projects(request)
        q = parse(self.params(request, ("projectId",)), projects)
        self.allow(projects, q.project_id)
        rec = await self.deletions().request(q.project_id, user)
        return reply(rec, 202, {"Location": f"/v1/deletions/{rec['deletion_id']}"})

    async def deletion(self, request):
        projects = self.projects(request)
        self.params(request, ())
        rec = self.deletions().get(request.match_info["id"])
        if rec is None:
            raise Refused(404, f"no deletion {request.match_info['id']!r}")
        self.allow(projects, rec["project_id"])
        return reply(rec)

    async def purge(self, request):
        self.projects(request)
        self.params(request, ())
        return reply(await self.deletions().purge_now())


async def start(service) -> Api:
    api = Api(service)
    await api.start()
    return api
