"""CLI verbs of the web app: `radar users add|list|set-role|set-password` and `radar web` (the web app alone)."""

from __future__ import annotations

import logging
import os

import click

log = logging.getLogger(__name__)


@click.group()
def users() -> None:
    """Manage web users and their roles.

    Roles: viewer (reads everything), reviewer (also decides proposals),
    admin (also manages users on the /users page).
    """


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "reviewer", "admin"]), default="viewer", show_default=True)
@click.option("--email", default="", help="Address for followed searches.")
def users_add(name: str, role: str, email: str) -> None:
    """Add a user; the password is read from RADAR_USER_PASSWORD or asked for.

    Only an argon2 hash of the password is stored.
    """
    from radar.auth import add_user, check_password
    from radar.db import get_engine

    password = os.environ.get("RADAR_USER_PASSWORD")
    if password is None:
        password = click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    check_password(password)
    user = add_user(get_engine(), name, password, role=role, email=email)
    click.echo(f"added {user.username} ({user.role})")


@users.command("list")
def users_list() -> None:
    """List users with their roles."""
    from radar.auth import list_users
    from radar.db import get_engine

    rows = list_users(get_engine())
    if not rows:
        click.echo("no users; add one with: radar users add NAME --role reviewer")
        return
    for user in rows:
        state = "" if user.active else "  (inactive)"
        last = f"last login {user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never logged in"
        click.echo(f"{user.username:<30} {user.role:<9} {last:<28} {user.email}{state}")


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["viewer", "reviewer", "admin"]))
def users_set_role(name: str, role: str) -> None:
    """Change a user's role; it applies to their next page view."""
    from radar.auth import set_role
    from radar.db import get_engine

    user = set_role(get_engine(), name, role)
    click.echo(f"{user.username} is now {user.role}")


@users.command("set-password")
@click.argument("name")
def users_set_password(name: str) -> None:
    """Give a user a new password, read from RADAR_USER_PASSWORD or asked for.

    The user's web sessions end at once: whoever knew the old password is logged out.
    """
    from radar.auth import check_password, set_password
    from radar.db import get_engine

    password = os.environ.get("RADAR_USER_PASSWORD")
    if password is None:
        password = click.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True)
    check_password(password)
    set_password(get_engine(), name, password)
    click.echo(f"new password set for {name}; their sessions have ended")


@click.command("web")
@click.option("--host", default=None, help="Address to listen on (default: the web_host setting).")
@click.option("--port", type=int, default=None, help="Port (default: the web_port setting).")
def web(host: str | None, port: int | None) -> None:
    """Serve the web app alone (no scheduler).

    Search, notices, proposals, sources and the JSON API at /api; `radar serve`
    runs the same app beside the scheduler.
    """
    import uvicorn

    from radar.db import get_engine
    from radar.settings import get_settings
    from radar.web.app import create_app

    settings = get_settings()
    app = create_app(get_engine())
    host = host or settings.web_host
    port = port or int(settings.web_port)
    click.echo(f"serving the web app on http://{host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), proxy_headers=True)


COMMANDS = [users, web]
