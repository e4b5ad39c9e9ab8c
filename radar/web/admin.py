"""The pages that change who uses the radar and who hears from it: users (admins) and digest subscriptions."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from radar.auth import MIN_PASSWORD_LENGTH, ROLES, UserError, add_user, get_user_by_id, list_users, set_password, set_role
from radar.models import Subscription, User
from radar.subscriptions import (
    SEVERITIES,
    SubscriptionError,
    SubscriptionView,
    add_subscription,
    label_for,
    list_subscriptions,
    taxonomy_or_none,
    update_subscription,
)
from radar.web.auth import SUBSCRIPTION_EDITORS, log_in, require_admin, require_subscription_editor, require_user
from radar.web.csrf import csrf_protect
from radar.web.routes import _engine, flash, page

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])

_LIST_SEPARATORS = re.compile(r"[\s,;]+")


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- users ----------------------------------------------------------------------------------------


def _users_page(request: Request, form: dict[str, str] | None = None, status: int = 200):
    return page(request, "users.html", {
        "title": "Users", "nav": "users", "users": list_users(_engine(request)), "roles": ROLES,
        "min_password": MIN_PASSWORD_LENGTH, "form": form or {"username": "", "role": "viewer", "email": ""},
    }, status=status)


def _user_or_404(request: Request, user_id: int) -> User:
    user = get_user_by_id(_engine(request), user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    return user


@router.get("/users")
def users_page(request: Request, admin: User = Depends(require_admin)):
    return _users_page(request)


@router.post("/users")
def users_add(request: Request, admin: User = Depends(require_admin), username: str = Form(""), password: str = Form(""),
              role: str = Form("viewer"), email: str = Form("")):
    form = {"username": username.strip(), "role": role, "email": email.strip()}
    try:
        user = add_user(_engine(request), form["username"], password, role=role, email=form["email"])
    except UserError as exc:
        flash(request, str(exc), "error")
        return _users_page(request, form, status=400)  # the typed values stay; the password is typed again
    log.info("%s added user %s (%s)", admin.username, user.username, user.role)
    flash(request, f"Added {user.username} as {user.role}.")
    return _back("/users")


@router.post("/users/{user_id}/role")
def users_set_role(request: Request, user_id: int, admin: User = Depends(require_admin), role: str = Form("")):
    target = _user_or_404(request, user_id)
    try:
        user = set_role(_engine(request), target.username, role)
    except UserError as exc:
        flash(request, str(exc), "error")
        return _back("/users")
    log.info("%s set the role of %s to %s", admin.username, user.username, user.role)
    flash(request, f"{user.username} is now {user.role}.")
    if user.id == admin.id and user.role != "admin":
        return _back("/search")  # the users page is no longer theirs to see
    return _back("/users")


@router.post("/users/{user_id}/password")
def users_set_password(request: Request, user_id: int, admin: User = Depends(require_admin), password: str = Form("")):
    target = _user_or_404(request, user_id)
    try:
        set_password(_engine(request), target.username, password)
    except UserError as exc:
        flash(request, f"{target.username}: {exc}", "error")
        return _back("/users")
    log.info("%s set a new password for %s", admin.username, target.username)
    if target.id == admin.id:  # every session of the user ends with the old password; this one starts afresh
        log_in(request, get_user_by_id(_engine(request), admin.id))
    flash(request, f"New password set for {target.username}." + ("" if target.id == admin.id else " Their sessions have ended."))
    return _back("/users")


# -- digest subscriptions -------------------------------------------------------------------------


@dataclass
class SubscriptionRow:
    view: SubscriptionView
    categories: list[tuple[str, str]]  # (taxonomy id, label)
    form: dict[str, str]  # the values of its edit form
    open: bool  # the edit form is shown unfolded (after a refused change)


def _split(value: str) -> list[str]:
    """The values of a list field, separated by commas, semicolons, spaces or new lines."""
    return [v for v in _LIST_SEPARATORS.split(value or "") if v]


def _form_of(view: SubscriptionView) -> dict[str, str]:
    return {"name": view.name, "recipients": ", ".join(view.recipients), "markets": ", ".join(view.markets),
            "categories": ", ".join(view.categories), "min_severity": view.min_severity, "language": view.language}


def _subscriptions_page(request: Request, user: User, *, adding: dict[str, str] | None = None,
                        editing: tuple[int, dict[str, str]] | None = None, status: int = 200):
    taxonomy = taxonomy_or_none()
    rows = []
    for row in list_subscriptions(_engine(request)):
        view = SubscriptionView.of(row, taxonomy)
        kept = editing is not None and editing[0] == view.id
        rows.append(SubscriptionRow(view, [(c, label_for(c, taxonomy)) for c in view.categories],
                                    editing[1] if kept else _form_of(view), kept))
    return page(request, "subscriptions.html", {
        "title": "Digest subscriptions", "nav": "subscriptions", "rows": rows, "severities": SEVERITIES,
        "can_edit": user.role in SUBSCRIPTION_EDITORS,
        "adding": adding or {"name": "", "recipients": "", "markets": "", "categories": "", "min_severity": "medium",
                             "language": "en"},
        "add_open": adding is not None,
    }, status=status)


def _subscription_or_404(request: Request, subscription_id: int) -> None:
    with Session(_engine(request)) as session:
        if session.get(Subscription, subscription_id) is None:
            raise HTTPException(404, f"no subscription {subscription_id}")


@router.get("/subscriptions")
def subscriptions_page(request: Request, user: User = Depends(require_user)):
    return _subscriptions_page(request, user)


@router.post("/subscriptions")
def subscriptions_add(request: Request, user: User = Depends(require_subscription_editor), name: str = Form(""),
                      recipients: str = Form(""), markets: str = Form(""), categories: str = Form(""),
                      min_severity: str = Form("medium"), language: str = Form("en")):
    form = {"name": name, "recipients": recipients, "markets": markets, "categories": categories,
            "min_severity": min_severity, "language": language}
    try:
        row = add_subscription(_engine(request), name, _split(recipients), markets=_split(markets),
                               categories=_split(categories), min_severity=min_severity, language=language)
    except SubscriptionError as exc:
        flash(request, str(exc), "error")
        return _subscriptions_page(request, user, adding=form, status=400)
    log.info("%s added subscription %r", user.username, row.name)
    flash(request, f"Added the subscription “{row.name}”.")
    return _back(f"/subscriptions#subscription-{row.id}")


@router.post("/subscriptions/{subscription_id}")
def subscriptions_edit(request: Request, subscription_id: int, user: User = Depends(require_subscription_editor),
                       name: str = Form(""), recipients: str = Form(""), markets: str = Form(""),
                       categories: str = Form(""), min_severity: str = Form("medium"), language: str = Form("en")):
    _subscription_or_404(request, subscription_id)
    form = {"name": name, "recipients": recipients, "markets": markets, "categories": categories,
            "min_severity": min_severity, "language": language}
    try:
        row = update_subscription(_engine(request), subscription_id, name=name, recipients=_split(recipients),
                                  markets=_split(markets), categories=_split(categories), min_severity=min_severity,
                                  language=language)
    except SubscriptionError as exc:
        flash(request, str(exc), "error")
        return _subscriptions_page(request, user, editing=(subscription_id, form), status=400)
    log.info("%s changed subscription %r", user.username, row.name)
    flash(request, f"Saved the subscription “{row.name}”.")
    return _back(f"/subscriptions#subscription-{row.id}")


@router.post("/subscriptions/{subscription_id}/active")
def subscriptions_set_active(request: Request, subscription_id: int, user: User = Depends(require_subscription_editor),
                             active: str = Form("")):
    _subscription_or_404(request, subscription_id)
    try:
        row = update_subscription(_engine(request), subscription_id, active=active == "1")
    except SubscriptionError as exc:
        flash(request, str(exc), "error")
        return _back("/subscriptions")
    log.info("%s %s subscription %r", user.username, "reactivated" if row.active else "deactivated", row.name)
    flash(request, f"“{row.name}” {'receives the digest again' if row.active else 'no longer receives the digest'}.")
    return _back(f"/subscriptions#subscription-{row.id}")
