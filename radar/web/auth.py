"""Who is asking: the logged-in user from the session (pages), or from the session or HTTP Basic (API).

A session holds the user's id, the time of login and a mark of the password it was opened with (an
HMAC of the password hash under the app's secret key: the cookie is signed, not encrypted); it ends
``web_session_max_age`` seconds after the login whatever the activity, at once when the user is
deactivated, and at once when the password is changed (by an admin on the users page or with
`radar users set-password`), so a password reset also ends the sessions of whoever knew the old one.
The role is read from the database on every request, so `radar users set-role` takes effect without a
new login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Collection
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from radar.auth import DECIDING_ROLES, ROLES, authenticate, get_user_by_id
from radar.models import User

log = logging.getLogger(__name__)

_basic = HTTPBasic(auto_error=False, description="A Risk Radar user name and password (the API also accepts the web session).")


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything pointing elsewhere becomes the search page."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value or "\r" in value:
        return "/search"
    return value


def login_url(request: Request) -> str:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(path, safe="")


def session_user(request: Request) -> User | None:
    """The user of this session, or None when nobody is logged in or the login expired."""
    if hasattr(request.state, "user"):  # already looked up for this request
        return request.state.user
    user = None
    user_id = request.session.get("uid")
    if user_id is not None:
        max_age = request.app.state.session_max_age
        logged_in_at = request.session.get("auth_at", 0)
        if time.time() - float(logged_in_at) > max_age:
            log.info("session of user %s expired", user_id)
            request.session.clear()
        else:
            user = get_user_by_id(request.app.state.engine, int(user_id))
            if user is None or not user.active:
                request.session.clear()
                user = None
            elif not hmac.compare_digest(str(request.session.get("pw", "")), _password_mark(request, user)):
                log.info("session of user %s ended: the password changed since the login", user_id)
                request.session.clear()
                user = None
    request.state.user = user
    return user


def log_in(request: Request, user: User) -> None:
    """Start a fresh session for the user (never reuse one made before the login)."""
    from radar.web.csrf import new_token

    request.session.clear()
    request.session["uid"] = user.id
    request.session["auth_at"] = time.time()
    request.session["pw"] = _password_mark(request, user)
    new_token(request)
    request.state.user = user


def _password_mark(request: Request, user: User) -> str:
    return hmac.new(request.app.state.password_mark_key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def log_out(request: Request) -> None:
    request.session.clear()
    request.state.user = None


def require_user(request: Request) -> User:
    """Page dependency: the logged-in user, or a redirect to the login page."""
    user = session_user(request)
    if user is None:
        raise LoginRequired(login_url(request))
    return user


def require_role(roles: Collection[str], doing: str):
    """A page dependency letting only users with one of `roles` through; anyone else gets 403 saying who may."""
    who = " and ".join(f"{role}s" for role in ROLES if role in roles)

    def dependency(user: User = Depends(require_user)) -> User:
        if user.role not in roles:
            raise HTTPException(status_code=403, detail=f"Only {who} {doing}; {user.username} is a {user.role}.")
        return user

    return dependency


# Those who decide the rules also decide who hears about the notices behind them.
SUBSCRIPTION_EDITORS = DECIDING_ROLES

require_reviewer = require_role(DECIDING_ROLES, "decide proposals")
require_subscription_editor = require_role(SUBSCRIPTION_EDITORS, "change digest subscriptions")
require_admin = require_role({"admin"}, "manage users")


def api_user(request: Request, credentials: HTTPBasicCredentials | None = Depends(_basic)) -> User:
    """API dependency: the session's user, or HTTP Basic credentials; otherwise 401."""
    user = session_user(request)
    if user is None and credentials is not None:
        user = authenticate(request.app.state.engine, credentials.username, credentials.password)
    if user is None:
        raise HTTPException(status_code=401, detail="log in, or send a user name and password with HTTP Basic",
                            headers={"WWW-Authenticate": 'Basic realm="risk-radar"'})
    request.state.user = user
    return user
