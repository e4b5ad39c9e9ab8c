"""The HTML pages: login, search with facets and exports, saved searches, notices, proposals, sources, digest."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlmodel import Session

from radar.errors import RadarError, SearchQueryError
from radar.models import SavedSearch, User
from radar.settings import get_settings
from radar.web import data, render
from radar.web.auth import log_in, log_out, require_reviewer, require_user, safe_next, session_user
from radar.web.csrf import csrf_protect, csrf_token
from radar.search import search as run_search
from radar.web.facets import Facets, facet_counts
from radar.web.query import SearchParams

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])

FACET_TITLES = {"source": "Source", "market": "Market", "category": "Category", "hazard": "Hazard", "policy": "Policy class"}
FACET_CACHE_SECONDS = 30
FACET_CACHE_SIZE = 256
EXPORT_PAGE = 1000
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_facet_lock = threading.Lock()


# -- page plumbing --------------------------------------------------------------------------------


def _engine(request: Request):
    return request.app.state.engine


def flash(request: Request, message: str, kind: str = "info") -> None:
    request.session["flash"] = request.session.get("flash", []) + [[kind, message]]


def _take_flashes(request: Request) -> list:
    """The flash messages to show on this page, used up unless the page answers a HEAD."""
    if getattr(request.state, "head", False):
        return request.session.get("flash", [])
    return request.session.pop("flash", []) if "flash" in request.session else []


def page(request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200,
         headers: dict[str, str] | None = None) -> HTMLResponse:
    from radar.auth import can_decide

    user = session_user(request)
    ctx = {
        "user": user, "can_decide": bool(user and can_decide(user.role)), "csrf_token": csrf_token(request),
        "flashes": _take_flashes(request),
        "path": request.url.path, "title": "", "nav": "",
    }
    ctx.update(context or {})
    return request.app.state.templates.TemplateResponse(request, name, ctx, status_code=status, headers=headers)


def error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Not logged in", 403: "Not allowed", 404: "Not found", 405: "Method not allowed",
              409: "Conflict", 422: "Bad request", 503: "Not available"}
    return page(request, "error.html", {"status": status, "message": message, "title": titles.get(status, "Error")},
                status=status, headers=headers)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/search", status_code=303)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)


# -- login ----------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/search"):
    if session_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", {"next": safe_next(next), "error": None, "username": "", "title": "Log in"})


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/search")):
    from radar.auth import authenticate, record_login

    user = authenticate(_engine(request), username.strip(), password)
    if user is None:
        log.info("failed login for %r", username[:100])
        return page(request, "login.html", {"next": safe_next(next), "error": "Wrong user name or password.",
                                            "username": username[:100], "title": "Log in"})
    log_in(request, user)
    record_login(_engine(request), user)
    log.info("user %s logged in", user.username)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request):
    log_out(request)
    return RedirectResponse("/login", status_code=303)


# -- search ---------------------------------------------------------------------------------------


@dataclass
class FacetItem:
    label: str
    value: str
    count: str
    url: str
    selected: bool


@dataclass
class FacetGroup:
    name: str
    title: str
    items: list[FacetItem]


@dataclass
class HitView:
    id: int
    title: str
    url: str
    source: str
    source_title: str
    source_id: str
    published: date | None
    snippet: Any  # Markup
    tags: list[tuple[str, str]]  # (css class, label)


def _count_text(count: int, approximate: bool) -> str:
    return f"~{count:,}" if approximate else f"{count:,}"


def facet_groups(params: SearchParams, facets: Facets, tax, source_titles: dict[str, str]) -> list[FacetGroup]:
    """The facet lists of the search page, each value with its count and the URL that toggles it."""
    groups = []
    for name, values in facets.values.items():
        items = []
        for v in values:
            label = source_titles.get(v.value, v.value) if name == "source" else data.label_of(tax, v.value)
            items.append(FacetItem(label, v.value, _count_text(v.count, facets.approximate), params.toggle(name, v.value),
                                   v.value in getattr(params, name)))
        if items:
            groups.append(FacetGroup(name, FACET_TITLES[name], items))
    years = []
    for v in facets.years:
        if not v.value:
            continue  # undated notices cannot be selected by a date range
        since, until = date(int(v.value), 1, 1), date(int(v.value), 12, 31)
        selected = params.since == since and params.until == until
        url = params.url(since=None, until=None, page=1) if selected else params.url(since=since, until=until, page=1)
        years.append(FacetItem(v.value, v.value, _count_text(v.count, facets.approximate), url, selected))
    if years:
        groups.append(FacetGroup("year", "Published", years))
    gtin = []
    for value, label in (("yes", "with GTIN"), ("no", "without GTIN")):
        selected = params.gtin == value
        gtin.append(FacetItem(label, value, _count_text(facets.gtin[value], facets.approximate),
                              params.url(gtin="" if selected else value, page=1), selected))
    groups.append(FacetGroup("gtin", "Product code", gtin))
    return groups


def active_filters(params: SearchParams, tax, source_titles: dict[str, str]) -> list[tuple[str, str]]:
    """(label, URL without it) for every filter in force, so each can be removed in one click."""
    out = []
    for name in ("source", "market", "category", "hazard", "policy"):
        for value in getattr(params, name):
            label = source_titles.get(value, value) if name == "source" else data.label_of(tax, value)
            out.append((f"{FACET_TITLES[name].lower()}: {label}", params.toggle(name, value)))
    if params.since:
        out.append((f"since {params.since}", params.url(since=None, page=1)))
    if params.until:
        out.append((f"until {params.until}", params.url(until=None, page=1)))
    if params.gtin:
        out.append(("with GTIN" if params.gtin == "yes" else "without GTIN", params.url(gtin="", page=1)))
    return out


def hit_views(hits, tax, source_titles: dict[str, str]) -> list[HitView]:
    out = []
    for hit in hits:
        tags = [("market", data.label_of(tax, v)) for v in hit.jurisdictions[:5]]
        tags += [("category", data.label_of(tax, v)) for v in hit.categories[:3]]
        tags += [("hazard", data.label_of(tax, v)) for v in hit.hazards[:3]]
        out.append(HitView(hit.id, hit.title or "(no title)", hit.url, hit.source, source_titles.get(hit.source, hit.source),
                           hit.source_id, hit.published, render.snippet_html(hit.snippet), tags))
    return out


def cached_facets(request: Request, params: SearchParams, filters, total: int, match_ids: list[int] | None = None) -> Facets:
    """Facet counts, kept for a few seconds: paging through one search should not count it again."""
    cache: dict = request.app.state.facet_cache
    key = (params.q, repr(filters), total)
    now = time.monotonic()
    with _facet_lock:
        hit = cache.get(key)
    if hit and now - hit[0] < FACET_CACHE_SECONDS:
        return hit[1]
    keep = {name: list(getattr(params, name)) for name in ("source", "market", "category", "hazard", "policy")}
    keep["market"] = list(filters.jurisdictions)
    settings = get_settings()
    facets = facet_counts(_engine(request), params.q, filters, total=total, sample_above=int(settings.web_facet_sample_above),
                          keep=keep, time_limit=int(settings.web_facet_time_limit_ms) / 1000, match_ids=match_ids)
    with _facet_lock:  # pages are served from a thread pool
        if len(cache) >= FACET_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = (now, facets)
    return facets


def _parse_search(request: Request, tax) -> tuple[SearchParams, Any, str | None]:
    try:
        params = SearchParams.from_pairs(request.query_params.multi_items())
        filters = params.filters(data.market_lookup(tax))
    except SearchQueryError as exc:
        return SearchParams(), None, str(exc)
    return params, filters, None


@router.get("/search")
def search_page(request: Request, user: User = Depends(require_user)):
    tax = data.taxonomy()
    configs, _ = data.source_configs()
    source_titles = {name: c.title for name, c in configs.items()}
    params, filters, error = _parse_search(request, tax)
    context: dict[str, Any] = {"title": "Search", "nav": "search", "params": params, "error": error, "hits": [],
                               "total": 0, "facets": [], "active": [], "approximate": False, "facets_timed_out": False}
    size = int(get_settings().search_page_size)
    if error is None:
        try:
            started = time.perf_counter()
            result = run_search(_engine(request), params.q, filters, sort=params.sort, limit=size, offset=(params.page - 1) * size,
                                estimate_above=int(get_settings().web_count_estimate_above) or None)
            facets = cached_facets(request, params, filters, result.total, result.match_ids)
            context.update(
                hits=hit_views(result.hits, tax, source_titles), total=result.total, total_approximate=result.approximate,
                facets=facet_groups(params, facets, tax, source_titles), approximate=facets.approximate,
                facets_timed_out=facets.timed_out,
                active=active_filters(params, tax, source_titles), seconds=f"{time.perf_counter() - started:.2f}",
            )
        except SearchQueryError as exc:
            error = context["error"] = str(exc)
    total = context["total"]
    pages = min(max(math.ceil(total / size), 1), 500)
    first = (params.page - 1) * size + 1
    context.update(
        showing=(f"{first:,}–{min(first + size - 1, total):,} of {'about ' if context.get('total_approximate') else ''}{total:,}"
                 if total and first <= total else f"0 of {total:,}"),
        page_number=params.page, pages=pages,
        prev_url=params.url(page=params.page - 1) if params.page > 1 else None,
        next_url=params.url(page=params.page + 1) if params.page < pages else None,
        sort_urls=[("date", "newest first", params.url(sort="date", page=1)),
                   ("relevance", "best match", params.url(sort="relevance", page=1))],
        csv_url=params.url("/search.csv", page=1), json_url=params.url("/search.json", page=1),
        saved_query=urlencode(params.pairs(page=False)),
        clear_url=SearchParams(q=params.q, sort=params.sort).url(),
        filters_hidden=[(k, v) for k, v in params.pairs(page=False) if k not in ("q", "sort")],
    )
    if "seconds" not in context:
        context["seconds"] = ""
    return page(request, "search.html", context, status=400 if error else 200)


def _export_rows(request: Request, params: SearchParams, filters):
    """Every hit of the search up to the export limit, a thousand at a time."""
    limit = int(get_settings().web_export_limit)
    offset = 0
    while offset < limit:
        result = run_search(_engine(request), params.q, filters, sort=params.sort, limit=min(EXPORT_PAGE, limit - offset), offset=offset)
        yield from result.hits
        if len(result.hits) < EXPORT_PAGE:
            return
        offset += len(result.hits)


CSV_COLUMNS = ["id", "published", "source", "source_id", "title", "url", "markets", "categories", "hazards", "snippet", "page"]


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet; notice text must never run as one.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/search.csv")
def search_csv(request: Request, user: User = Depends(require_user)):
    params, filters, error = _parse_search(request, data.taxonomy())
    if error:
        raise HTTPException(400, error)
    base = str(request.base_url).rstrip("/")

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for hit in _export_rows(request, params, filters):
            writer.writerow([_csv_cell(v) for v in (
                hit.id, hit.published.isoformat() if hit.published else "", hit.source, hit.source_id, hit.title, hit.url,
                " ".join(hit.jurisdictions), " ".join(hit.categories), " ".join(hit.hazards),
                render.plain_snippet(hit.snippet), f"{base}/notices/{hit.id}")])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="radar-search.csv"'})


@router.get("/search.json")
def search_json(request: Request, user: User = Depends(require_user)):
    params, filters, error = _parse_search(request, data.taxonomy())
    if error:
        raise HTTPException(400, error)
    base = str(request.base_url).rstrip("/")
    results = [dict(hit.as_json(), page=f"{base}/notices/{hit.id}") for hit in _export_rows(request, params, filters)]
    body = {"query": params.q, "params": params.as_saved(), "count": len(results), "results": results}
    return Response(json.dumps(body, ensure_ascii=False, indent=1), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="radar-search.json"'})


# -- saved searches -------------------------------------------------------------------------------


@dataclass
class SavedView:
    saved: SavedSearch
    url: str
    error: str | None


@router.get("/searches")
def saved_list(request: Request, user: User = Depends(require_user)):
    views = []
    for saved in data.saved_searches(_engine(request), user.id):
        try:
            views.append(SavedView(saved, SearchParams.from_saved(saved.query, saved.params).url(), None))
        except SearchQueryError as exc:
            views.append(SavedView(saved, "/search", str(exc)))
    return page(request, "searches.html", {"title": "Saved searches", "nav": "searches", "saved": views})


@router.post("/searches")
def save_search(request: Request, user: User = Depends(require_user), name: str = Form(""), search: str = Form(""),
                follow: str = Form("")):
    name = " ".join(name.split())[:200]
    if not name:
        flash(request, "Give the search a name to save it.", "error")
        return RedirectResponse("/search?" + search if search else "/search", status_code=303)
    params = SearchParams.from_pairs(parse_qsl(search, keep_blank_values=False))  # a bad one raises: 400 page
    with Session(_engine(request)) as session:
        session.add(SavedSearch(user_id=user.id, name=name, query=params.q, params=params.as_saved(), follow=bool(follow)))
        session.commit()
    flash(request, f"Saved “{name}”" + (" and followed by email." if follow else "."))
    return RedirectResponse("/searches", status_code=303)


def _own_search(request: Request, user: User, search_id: int, session: Session) -> SavedSearch:
    saved = session.get(SavedSearch, search_id)
    if saved is None or saved.user_id != user.id:
        raise HTTPException(404, f"no saved search {search_id} of yours")
    return saved


@router.post("/searches/{search_id}/follow")
def follow_search(request: Request, search_id: int, user: User = Depends(require_user), follow: str = Form("")):
    with Session(_engine(request)) as session:
        saved = _own_search(request, user, search_id, session)
        saved.follow = follow == "1"
        session.add(saved)
        session.commit()
        flash(request, f"{'Following' if saved.follow else 'No longer following'} “{saved.name}”.")
    return RedirectResponse("/searches", status_code=303)


@router.post("/searches/{search_id}/delete")
def delete_search(request: Request, search_id: int, user: User = Depends(require_user)):
    with Session(_engine(request)) as session:
        saved = _own_search(request, user, search_id, session)
        name = saved.name
        session.delete(saved)
        session.commit()
    flash(request, f"Deleted “{name}”.")
    return RedirectResponse("/searches", status_code=303)


# -- notices --------------------------------------------------------------------------------------


@router.get("/notices/{notice_id}")
def notice_page(request: Request, notice_id: int, a: int | None = None, b: int | None = None,
                user: User = Depends(require_user)):
    view = data.notice_view(_engine(request), notice_id, (a, b) if a and b else None)
    if view is None:
        raise HTTPException(404, f"no notice {notice_id}")
    return page(request, "notice.html", {"title": view.notice.title or f"Notice {notice_id}", "nav": "search", "v": view})


def _raw_response(found, notice_id: int) -> Response:
    if found is None:
        raise HTTPException(404, f"no stored raw snapshot for notice {notice_id} at that version")
    notice, body, version = found
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{notice.source}-{notice.source_id}-v{version}")[:120]
    # Always text/plain and an attachment: the snapshot is what a publisher served, never our markup.
    return Response(body, media_type="text/plain; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{stem}.txt"',
        "Content-Security-Policy": "sandbox; default-src 'none'",
    })


@router.get("/notices/{notice_id}/raw")
def notice_raw(request: Request, notice_id: int, user: User = Depends(require_user)):
    return _raw_response(data.raw_snapshot(_engine(request), notice_id), notice_id)


@router.get("/notices/{notice_id}/versions/{version}/raw")
def notice_version_raw(request: Request, notice_id: int, version: int, user: User = Depends(require_user)):
    return _raw_response(data.raw_snapshot(_engine(request), notice_id, version), notice_id)


# -- proposals ------------------------------------------------------------------------------------

STATUSES = ("pending", "accepted", "rejected", "stale")


@router.get("/proposals")
def proposals_page(request: Request, status: str = "", user: User = Depends(require_user)):
    if status and status not in STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(STATUSES)}")
    counts = data.proposal_counts(_engine(request))
    tabs = [("", f"all ({sum(counts.values()):,})", "/proposals")]
    tabs += [(s, f"{s} ({counts.get(s, 0):,})", f"/proposals?status={s}") for s in STATUSES]
    rows = data.proposal_rows(_engine(request), status or None)
    return page(request, "proposals.html", {"title": "Proposals", "nav": "proposals", "rows": rows, "tabs": tabs, "status": status})


def _proposal_context(request: Request, proposal_id: int, **extra) -> dict[str, Any]:
    view = data.proposal_view(_engine(request), proposal_id)
    if view is None:
        raise HTTPException(404, f"no proposal {proposal_id}")
    context = {"title": f"Proposal {proposal_id}: {view.proposal.title}", "nav": "proposals", "v": view,
               "review_installed": data.review_module() is not None, "form_error": None,
               "form": {"decision": "", "comment": "", "edited_rule": view.rule_yaml}}
    context.update(extra)
    return context


@router.get("/proposals/{proposal_id}")
def proposal_page(request: Request, proposal_id: int, user: User = Depends(require_user)):
    return page(request, "proposal.html", _proposal_context(request, proposal_id))


@router.post("/proposals/{proposal_id}/decide")
def decide_proposal(request: Request, proposal_id: int, user: User = Depends(require_reviewer),
                    decision: str = Form(""), comment: str = Form(""), edited_rule: str = Form("")):
    form = {"decision": decision, "comment": comment, "edited_rule": edited_rule}

    def refuse(message: str, status: int = 400):
        context = _proposal_context(request, proposal_id, form_error=message)
        context["form"] = form if edited_rule else dict(form, edited_rule=context["form"]["edited_rule"])
        return page(request, "proposal.html", context, status=status)

    if data.review_module() is None:
        return refuse("The review stage (radar.review) is not installed, so decisions cannot be recorded here.", 503)
    if decision not in ("accept", "edit", "reject"):
        return refuse("Choose accept, edit or reject.")
    rule = None
    if decision == "edit":
        try:
            rule = yaml.safe_load(edited_rule)
        except yaml.YAMLError as exc:
            return refuse(f"The edited rule is not valid YAML: {exc}")
        if not isinstance(rule, dict):
            return refuse("The edited rule must be a YAML mapping of rule fields (id, policy_class, markets, …).")
    if decision in ("edit", "reject") and not comment.strip():
        return refuse("Say why in the comment: edits and rejections are read by whoever drafts the next proposal.")
    try:
        data.decide(_engine(request), proposal_id, user.username, decision, comment.strip(), edited_rule=rule)
    except RadarError as exc:
        return refuse(str(exc), 409)
    log.info("proposal %s: %s by %s", proposal_id, decision, user.username)
    flash(request, {"accept": "Accepted", "edit": "Accepted with your edit", "reject": "Rejected"}[decision]
          + f": proposal {proposal_id}.")
    return RedirectResponse(f"/proposals/{proposal_id}", status_code=303)


# -- sources --------------------------------------------------------------------------------------


@router.get("/sources")
def sources_page(request: Request, user: User = Depends(require_user)):
    health, error = data.source_health(_engine(request))
    failing = sum(1 for h in health if h.status == "failed")
    return page(request, "sources.html", {"title": "Sources", "nav": "sources", "health": health, "error": error,
                                          "failing": failing})


# -- digest preview -------------------------------------------------------------------------------


def _digest_module():
    import importlib

    try:
        module = importlib.import_module("radar.digest")
    except ImportError as exc:
        if exc.name != "radar.digest":
            log.warning("radar.digest failed to import: %s", exc)
        return None
    return module if hasattr(module, "render_preview") else None


def _week(value: str) -> str:
    if not value:
        year, week, _ = date.today().isocalendar()
        return f"{year}-W{week:02d}"
    match = WEEK.match(value)
    if not match or not 1 <= int(match.group(2)) <= 53:
        raise HTTPException(400, f"week {value!r} is not an ISO week like 2026-W47")
    return value


def _preview(request: Request, week: str, subscription: int | None):
    module = _digest_module()
    if module is None or subscription is None:
        return None, None
    return module.render_preview(_engine(request), week, subscription)


@router.get("/digest")
def digest_page(request: Request, week: str = "", subscription: int | None = None, user: User = Depends(require_user)):
    week = _week(week)
    subs = data.subscriptions(_engine(request))
    if subscription is None and subs:
        subscription = subs[0].id
    if subscription is not None and subscription not in {s.id for s in subs}:
        raise HTTPException(404, f"no subscription {subscription}")
    installed = _digest_module() is not None
    error = None
    text = None
    if installed and subscription is not None:
        try:
            _, text = _preview(request, week, subscription)
        except RadarError as exc:
            error = str(exc)
    return page(request, "digest.html", {
        "title": "Digest preview", "nav": "digest", "week": week, "subscriptions": subs, "subscription": subscription,
        "installed": installed, "error": error, "text": text,
        "frame_url": f"/digest/preview.html?{urlencode({'week': week, 'subscription': subscription})}" if subscription else "",
    })


@router.get("/digest/preview.html")
def digest_preview_html(request: Request, week: str = "", subscription: int | None = None, user: User = Depends(require_user)):
    week = _week(week)
    if _digest_module() is None:
        raise HTTPException(503, "the digest stage (radar.digest) is not installed")
    if subscription is None:
        raise HTTPException(400, "choose a subscription")
    html, _ = _preview(request, week, subscription)
    # The email's HTML is shown in a sandboxed frame: its inline styles apply, no script can run.
    return HTMLResponse(html, headers={
        "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; frame-ancestors 'self'",
    })

