"""The web app: archive search, notices, proposal review, source health, digest and subscriptions, users, JSON API.

``create_app(engine)`` builds the FastAPI application; `radar web` serves it alone and `radar serve`
serves it beside the scheduler. Pages are server-rendered Jinja2 (templates/web/, autoescaped), with
a few lines of plain JavaScript; the JSON API under /api is described at /api/openapi.json.
"""

from __future__ import annotations

import logging
import secrets
from datetime import date, datetime, timezone
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from radar.errors import RadarError
from radar.settings import REPO_ROOT, get_settings
from radar.web.auth import LoginRequired

log = logging.getLogger(__name__)

TEMPLATES_DIR = REPO_ROOT / "templates" / "web"
STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "radar_session"

# Pages load nothing from elsewhere and run no inline script, so a strict policy costs nothing and
# turns any markup that slipped through escaping into inert text.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
# Swagger UI at /api/docs comes from a CDN and runs inline script; it gets its own, looser policy.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "frame-ancestors 'self'")


class SecurityHeaders:
    """Adds CSP, nosniff, frame and referrer headers to every response that does not set its own."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope.get("path") == "/api/docs" else CSP

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in ((b"content-security-policy", csp), (b"x-content-type-options", "nosniff"),
                                    (b"x-frame-options", "SAMEORIGIN"), (b"referrer-policy", "same-origin")):
                    if name not in present:
                        headers.append((name, value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """Answers HEAD as the same GET without its body (RFC 9110 §9.3.2).

    FastAPI's routes accept only the methods they list, so `@router.get` pages answer HEAD with 405
    (fastapi/fastapi#1773); Starlette's own routes, Ring's wrap-head and WAI's autohead do it this way.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message) -> None:
            if message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # request.state.head tells a page it answers a HEAD: it must not use up what only a GET should
        # (the flash messages waiting for the next page view).
        state = {**scope.get("state", {}), "head": True}
        await self.app(dict(scope, method="GET", state=state), receive, send_without_body)


def _num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _day(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def _when(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every template, whatever its name: notice text is hostile until shown otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, day=_day, when=_when)
    return Jinja2Templates(env=env)


def _secret_key() -> str:
    key = get_settings().web_secret_key
    if key:
        return key
    log.warning("web_secret_key is not set: using a random key, so every login ends when the process restarts; "
                "set RADAR_WEB_SECRET_KEY to a long random string in production")
    return secrets.token_urlsafe(48)


def create_app(engine: Engine | None = None) -> FastAPI:
    """The web application over `engine` (default: the database of the settings, migrated)."""
    from radar.db import get_engine
    from radar.web import admin, api, routes

    settings = get_settings()
    app = FastAPI(
        title="Risk Radar",
        version="0.1",
        description="Archive search, notices, rule-change proposals and source health. "
                    "Authenticate with the web session or HTTP Basic (a Risk Radar user).",
        docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json",
    )
    app.state.engine = engine if engine is not None else get_engine()
    app.state.session_max_age = int(settings.web_session_max_age)
    app.state.templates = make_templates()
    app.state.facet_cache = {}
    secret_key = _secret_key()
    app.state.password_mark_key = secret_key.encode()
    app.add_middleware(SessionMiddleware, secret_key=secret_key, session_cookie=SESSION_COOKIE,
                       max_age=int(settings.web_session_max_age), same_site="lax",
                       https_only=bool(settings.web_cookie_secure))
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(api.router)
    app.include_router(routes.router)
    app.include_router(admin.router)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        return RedirectResponse(exc.next_path, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return routes.error_page(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors())
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": problems}, status_code=422)
        return routes.error_page(request, 422, problems)

    @app.exception_handler(RadarError)
    async def _radar_error(request: Request, exc: RadarError):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=400)
        return routes.error_page(request, 400, str(exc))

    return app
