"""CSRF protection: one random token per session, required on every POST as a form field or header.

The token lives in the signed session cookie and is put in every form as ``csrf_token``; a POST whose
token is missing or differs is refused with 403 before the route runs. The session cookie is also
SameSite=Lax, so other sites cannot make a browser POST with it in the first place; the token is the
check that does not depend on the browser.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import HTTPException, Request

log = logging.getLogger(__name__)

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(request: Request) -> str:
    """The session's token, made on first use."""
    token = request.session.get(SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return token


def new_token(request: Request) -> str:
    """A fresh token, e.g. after logging in, so a token seen before the login is worth nothing after."""
    token = secrets.token_urlsafe(32)
    request.session[SESSION_KEY] = token
    return token


async def csrf_protect(request: Request) -> None:
    """FastAPI dependency: refuse an unsafe request without the session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(SESSION_KEY)
    sent = request.headers.get(HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it, so the route reads the same form
            value = form.get(FORM_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(str(expected), str(sent)):
        log.info("refused %s %s: CSRF token %s", request.method, request.url.path, "missing" if not sent else "wrong")
        raise HTTPException(status_code=403, detail="The form's security token is missing or out of date: reload the page and try again.")
