"""The weekly digest: per subscription, what changed last week, as an HTML + text email with charts, sent once.

Three steps, each usable alone:

- :func:`load_archive` reads what every digest of a week needs from the database, once per week;
  :func:`build_digest` filters it for one subscription into a :class:`DigestData` (sections are
  registered with :func:`register_section`, the built-in ones included);
- :func:`render_digest` turns that into a subject, an HTML body (Jinja2, autoescaped, CSS inlined with
  css-inline) and a plain-text body; :func:`compose_message` wraps them as multipart/alternative with
  the charts as multipart/related PNG parts referenced by ``cid:``;
- :func:`send_week` delivers one email per recipient over SMTP, exactly once: a DigestDelivery row per
  (week, subscription, recipient) is created first, claimed with a compare-and-set ("sending"), and
  marked "sent" with its Message-ID only after the server accepted it. See docs/digest.md.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import smtplib
import ssl
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from radar.errors import ConfigError, RadarError
from radar.models import (
    SIDE_ROLES, Classification, DigestDelivery, ImpactEstimate, Incident, IncidentMember, Notice, Proposal, SavedSearch,
    Signal, SourceRun, Subscription, User, utcnow,
)
from radar.settings import REPO_ROOT, get_settings
from radar.subscriptions import (
    SEVERITY_RANK, SubscriptionView, get_subscription, label_for, market_jurisdiction, taxonomy_or_none,
)

log = logging.getLogger(__name__)

TEMPLATES_DIR = REPO_ROOT / "templates"
PASSWORD_ENV = "RADAR_SMTP_PASSWORD"
TEXT_WIDTH = 72
RETRY_WEEKS = 4  # run_weekly also retries failed deliveries of this many earlier weeks
TOP_SIGNAL_KINDS = ("spike", "legislation", "incident")
AXES = ("category", "jurisdiction", "hazard", "risk", "severity")
MAX_NOTICES_PER_ITEM = 5  # an incident reported by many sources lists its worst few


class DigestError(RadarError):
    """A digest could not be built or sent: a bad week, SMTP settings, or an unreachable server."""


# -- weeks --------------------------------------------------------------------------------------------

_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$")


def parse_week(week: str) -> date:
    """The Monday of an ISO week written like 2026-W47."""
    match = _WEEK.match((week or "").strip())
    if not match:
        raise DigestError(f"week {week!r} is not an ISO week like 2026-W47")
    try:
        return date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise DigestError(f"week {week!r} does not exist: {match[1]} has no week {int(match[2])}") from None


def week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def local_zone():
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = get_settings().timezone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone setting {name!r} is not an IANA time zone such as Europe/London "
                          "(set RADAR_TIMEZONE or edit config/settings.toml)") from None


def last_complete_week(now: datetime | None = None) -> str:
    """The ISO week that ended most recently in the timezone setting (on a Monday: the week before)."""
    local = (now or datetime.now(timezone.utc)).astimezone(local_zone())
    this_monday = local.date() - timedelta(days=local.weekday())
    return week_of(this_monday - timedelta(days=7))


def _midnight_utc(day: date, zone) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


# -- severity ---------------------------------------------------------------------------------------

# A source's own risk level, written as a whole label: "Serious risk", "serious", "High", "risk level: low".
# Whole-label matching keeps "High temperature" or "Low voltage" from reading as a level.
_LEVEL_LABEL = re.compile(r"^(?:risk(?: level)?\s*:?\s*)?(serious|severe|high|medium|moderate|low)(?: risk)?$")
_LEVEL_WORDS = {"serious": "serious", "severe": "serious", "high": "high", "medium": "medium",
                "moderate": "medium", "low": "low"}
# Hazards that can kill or maim, by the last part of their taxonomy id (hazard.choking, hazard.chemical.lead).
SEVERE_HAZARDS = frozenset({
    "choking", "suffocation", "asphyxiation", "strangulation", "electric_shock", "electrocution", "fire",
    "burns", "explosion", "chemical", "poisoning", "drowning", "ingestion", "magnets", "entrapment",
})


def _risk_level(value: str, score: float | None) -> str:
    tail = value.rsplit(".", 1)[-1].lower()
    if tail in SEVERITY_RANK:
        return tail
    try:
        number = float(value)
    except ValueError:
        number = score if score is not None else 0.0
    if number >= 0.85:
        return "serious"
    if number >= 0.6:
        return "high"
    if number >= 0.3:
        return "medium"
    return "low"


def notice_severity(findings: Iterable[tuple[str, str, float | None]], risk_labels: Sequence[str] = (),
                    labels: dict[str, Any] | None = None, name: Callable[[str], str] = str) -> tuple[str, str]:
    """(level, why) of a notice: low, medium, high or serious, and the evidence that set it.

    In order, the first that applies: (1) an NLP risk finding (axis "risk": a level id like risk.high,
    or a score, 0.85+ serious, 0.6+ high, 0.3+ medium, else low), the highest; (2) an NLP severity
    finding (severity.<level>), the highest; (3) the source's own risk level (labels["risk_level"] or a
    risk label that is a level, "Serious risk"); (4) hazards: one of SEVERE_HAZARDS gives high, any
    other hazard medium; (5) otherwise low. ``name`` turns a hazard id into words for the "why".
    """
    findings = list(findings)
    for axis, why in (("risk", "risk score"), ("severity", "severity finding")):
        levels = [_risk_level(value, score) if axis == "risk" else value.rsplit(".", 1)[-1]
                  for a, value, score in findings if a == axis]
        levels = [lv for lv in levels if lv in SEVERITY_RANK]
        if levels:
            return max(levels, key=SEVERITY_RANK.__getitem__), why
    candidates = [(labels or {}).get("risk_level"), *risk_labels]
    found = []
    for label in candidates:
        if isinstance(label, str):
            match = _LEVEL_LABEL.match(" ".join(label.lower().replace("-", " ").split()))
            if match:
                found.append((_LEVEL_WORDS[match[1]], label.strip()))
    if found:
        level, label = max(found, key=lambda pair: SEVERITY_RANK[pair[0]])
        return level, f"source risk level “{label}”"
    hazards = sorted({value for axis, value, _ in findings if axis == "hazard"})
    severe = [h for h in hazards if set(h.split(".")[1:]) & SEVERE_HAZARDS]
    if severe:
        return "high", f"hazard: {name(severe[0])}"
    if hazards:
        return "medium", f"hazard: {name(hazards[0])}"
    return "low", "no hazard found"


# -- what the digest shows ------------------------------------------------------------------------------


@dataclass
class NoticeLink:
    id: int
    title: str
    url: str
    source_title: str = ""


@dataclass
class NoticeEntry:
    """One notice as a digest shows it."""

    id: int
    source: str
    source_title: str
    title: str
    excerpt: str
    link: str
    original_url: str | None
    original_host: str
    published: date | None
    published_label: str
    severity: str
    severity_why: str
    markets: tuple[str, ...]
    categories: tuple[str, ...]
    hazards: tuple[str, ...]
    hazard_labels: str


@dataclass
class IncidentItem:
    """Notices about the same product or event (one Incident), or one notice on its own."""

    incident_id: int | None
    title: str
    severity: str
    severity_why: str
    notices: list[NoticeEntry]
    linked_by: str  # how the notices were linked, for the reader
    source_titles: str
    more_notices: int = 0  # members beyond MAX_NOTICES_PER_ITEM, counted but not listed


@dataclass
class NoticeGroup:
    market: str
    category: str
    items: list[IncidentItem]


@dataclass
class NoticesSection:
    groups: list[NoticeGroup]
    count: int  # items (incidents and single notices) selected, shown or not
    notice_count: int
    shown: int
    more: int
    more_link: str
    attributions: list[tuple[str, str]]  # (source title, credit line)
    min_severity: str


@dataclass
class SignalItem:
    id: int
    rank: int
    kind: str
    kind_label: str
    headline: str
    reason: str
    score: float
    notices: list[NoticeLink]
    more_notices: int


@dataclass
class EstimateView:
    catalogue: str
    scanned: int
    hits: int
    newly_hit: int
    already_hit: int
    exact: bool
    interval: tuple[int, int] | None
    share_percent: float | None
    when: str


@dataclass
class ProposalItem:
    id: int
    title: str
    kind_label: str
    rule_id: str
    rationale: str
    link: str
    estimate: EstimateView | None
    age_days: int


@dataclass
class DeadlineItem:
    id: int
    due: date
    due_label: str
    days_left: int
    headline: str
    reason: str
    notices: list[NoticeLink]


@dataclass
class SourceHealthItem:
    name: str
    title: str
    status: str  # failed, partial, quiet, never run
    last_run: str
    detail: str


@dataclass
class Chart:
    name: str
    title: str
    alt: str
    png: bytes
    text_lines: list[str]

    @property
    def cid(self) -> str:
        return f"{self.name}.{hashlib.sha1(self.png).hexdigest()[:12]}@radar"


@dataclass
class FollowedSearch:
    name: str
    query: str
    total: int
    hits: list[NoticeLink]
    link: str


@dataclass
class Listing:
    """The first entries of a section and how many there were in all (the rest are behind ``more_link``)."""

    items: list
    total: int
    more_link: str = ""

    @property
    def count(self) -> int:
        return self.total

    @property
    def more(self) -> int:
        return self.total - len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def _capped(items: list, more_link: str = "") -> Listing:
    return Listing(items[: int(get_settings().digest_section_limit)], len(items), more_link)


@dataclass
class SectionData:
    name: str
    title: str
    data: Any
    count: int
    empty_text: str

    @property
    def templates(self) -> tuple[str, str]:
        return f"_{self.name}.html", f"_{self.name}.txt"


@dataclass
class DigestData:
    """Everything one digest email says, computed; the templates only lay it out."""

    week: str
    period: str
    subscription: SubscriptionView
    base_url: str
    generated_at: datetime
    sections: list[SectionData]

    def section(self, name: str) -> SectionData | None:
        return next((s for s in self.sections if s.name == name), None)

    @property
    def charts(self) -> list[Chart]:
        section = self.section("charts")
        return list(section.data) if section else []

    def count(self, name: str) -> int:
        section = self.section(name)
        return section.count if section else 0


@dataclass
class RenderedDigest:
    subject: str
    html: str
    text: str
    charts: list[Chart]


# -- the week's archive, read once for every subscription ---------------------------------------------


@dataclass
class _Facts:
    id: int
    week: int  # index into WeekArchive.weeks
    markets: tuple[str, ...]
    categories: tuple[str, ...]


@dataclass
class _IncidentRef:
    id: int
    title: str
    method: str
    confidence: float


@dataclass
class WeekArchive:
    """What every digest of one week is built from; load it once with :func:`load_archive`."""

    week: str
    monday: date
    start: datetime  # UTC bounds of the week in the timezone setting
    end: datetime
    weeks: list[str]  # chart weeks, oldest first; the digest week is last
    facts: list[_Facts]
    notices: dict[int, NoticeEntry]  # new this week, every severity
    incidents: dict[int, _IncidentRef]  # notice id -> its incident
    signals: list[Signal]
    deadlines: list[Signal]
    signal_notices: dict[int, NoticeLink]
    proposals: list[tuple[Proposal, ImpactEstimate | None]]
    health: list[SourceHealthItem]
    attributions: dict[str, tuple[str, str]]  # source name -> (title, attribution)
    base_url: str
    taxonomy: Any = None
    chart_cache: dict[tuple, bytes] = field(default_factory=dict)

    @property
    def period(self) -> str:
        sunday = self.monday + timedelta(days=6)
        if self.monday.month == sunday.month:
            return f"{self.monday.day}–{sunday.day} {sunday:%B %Y}"
        if self.monday.year == sunday.year:
            return f"{self.monday.day} {self.monday:%B} – {sunday.day} {sunday:%B %Y}"
        return f"{self.monday.day} {self.monday:%B %Y} – {sunday.day} {sunday:%B %Y}"

    @property
    def send_day(self) -> date:
        return self.monday + timedelta(days=7)

    def label(self, node_id: str | None) -> str:
        return label_for(node_id, self.taxonomy)

    def notice_url(self, notice_id: int) -> str:
        return f"{self.base_url}/notices/{notice_id}"


def _chunks(values: Sequence[int], size: int = 500) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _one_line(text: str | None, limit: int) -> str:
    """Whitespace collapsed, cut at a word boundary near ``limit`` (hard cut for one endless word)."""
    flat = " ".join((text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    if len(cut) < limit * 0.6:
        cut = flat[:limit]
    return cut.rstrip(" ,;:.") + "…"


def _http_url(url: str | None) -> str | None:
    """The notice's own URL only when it is an http(s) address: never a javascript: or data: link."""
    if url and urlsplit(url.strip()).scheme.lower() in ("http", "https") and urlsplit(url.strip()).netloc:
        return url.strip()
    return None


def _day_label(day: date | None) -> str:
    return f"{day.day} {day:%b %Y}" if day else "undated"


def _cut(node_id: str, depth: int) -> str:
    return ".".join(node_id.split(".")[:depth])


def _under(value: str, prefix: str) -> bool:
    return value == prefix or value.startswith(prefix + ".")


def _related(a: str, b: str) -> bool:
    """One id is the other or below it (juris.eu and juris.eu.de; cat.toys and cat.toys.magnetic)."""
    return _under(a, b) or _under(b, a)


def load_archive(engine: Engine, week: str) -> WeekArchive:
    """Read everything the digests of ``week`` need, for all subscriptions at once.

    A notice is new in the week when it was first seen in it (Monday 00:00 to Monday 00:00 in the
    timezone setting), unless it was published more than digest_max_age_days before that week: a
    backfill or a newly added source does not flood the digest with old notices.
    """
    settings = get_settings()
    zone = local_zone()
    monday = parse_week(week)
    week = week_of(monday)
    n_weeks = max(1, int(settings.digest_chart_weeks))
    mondays = [monday - timedelta(days=7 * i) for i in range(n_weeks - 1, -1, -1)]
    window_start = _midnight_utc(mondays[0], zone)
    start, end = _midnight_utc(monday, zone), _midnight_utc(monday + timedelta(days=7), zone)
    bounds = [_midnight_utc(m, zone) for m in mondays] + [end]
    max_age = timedelta(days=int(settings.digest_max_age_days))
    oldest_published = mondays[0] - max_age
    base_url = settings.public_base_url.rstrip("/")
    taxonomy = taxonomy_or_none()
    sources = _load_source_configs()
    attributions = {name: (s.title, s.attribution) for name, s in sources.items()}

    window = (Notice.first_seen >= window_start, Notice.first_seen < end,
              or_(Notice.published >= oldest_published, Notice.published.is_(None)))
    with Session(engine) as session:
        # The window's notices: only ids and dates here, to keep memory flat on a large archive.
        in_window: dict[int, int] = {}
        for notice_id, first_seen, published in session.exec(
                select(Notice.id, Notice.first_seen, Notice.published).where(*window)):
            index = _week_index(first_seen, bounds)
            if index is None:
                continue
            if published is not None and published < mondays[index] - max_age:
                continue
            in_window[notice_id] = index
        findings: dict[int, list[tuple[str, str, float | None, str | None]]] = defaultdict(list)
        for notice_id, axis, value, score, role in session.exec(
                select(Classification.notice_id, Classification.axis, Classification.value, Classification.score,
                       Classification.role)
                .join(Notice, Notice.id == Classification.notice_id)
                .where(*window, Classification.axis.in_(AXES))):
            if notice_id in in_window and role not in SIDE_ROLES:  # not a market, or not a named hazard
                findings[notice_id].append((axis, value, score, role))
        facts = []
        for notice_id, index in in_window.items():
            rows = findings.get(notice_id, ())
            facts.append(_Facts(
                notice_id, index,
                tuple(sorted({v for a, v, _, _ in rows if a == "jurisdiction"})),
                tuple(sorted({v for a, v, _, _ in rows if a == "category"})),
            ))
        this_week = sorted(f.id for f in facts if f.week == n_weeks - 1)
        notices = _load_entries(session, this_week, findings, attributions, base_url, taxonomy)
        incidents = _load_incidents(session, this_week)
        signals = list(session.exec(select(Signal).where(Signal.week == week, Signal.kind.in_(TOP_SIGNAL_KINDS))))
        send_day = monday + timedelta(days=7)
        horizon = send_day + timedelta(days=int(settings.digest_upcoming_days))
        deadlines = list(session.exec(select(Signal).where(Signal.kind == "deadline", Signal.due >= send_day,
                                                           Signal.due <= horizon).order_by(Signal.due, Signal.id)))
        linked = sorted({i for s in signals + deadlines for i in (s.notice_ids or [])[:5] if isinstance(i, int)})
        signal_notices = {}
        for chunk in _chunks(linked):
            for notice_id, title, source in session.exec(
                    select(Notice.id, Notice.title, Notice.source).where(Notice.id.in_(chunk))):
                signal_notices[notice_id] = NoticeLink(notice_id, _one_line(title, 160) or f"notice {notice_id}",
                                                       f"{base_url}/notices/{notice_id}",
                                                       attributions.get(source, (source, ""))[0])
        proposals = _load_proposals(session)
        health = _source_health(session, sources, end, int(settings.digest_quiet_days))
    return WeekArchive(week=week, monday=monday, start=start, end=end, weeks=[f"W{m.isocalendar()[1]:02d}" for m in mondays],
                       facts=facts, notices=notices, incidents=incidents, signals=signals, deadlines=deadlines,
                       signal_notices=signal_notices, proposals=proposals, health=health, attributions=attributions,
                       base_url=base_url, taxonomy=taxonomy)


def _week_index(moment: datetime, bounds: list[datetime]) -> int | None:
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=timezone.utc)
    for i in range(len(bounds) - 1):
        if bounds[i] <= moment < bounds[i + 1]:
            return i
    return None


def _load_source_configs() -> dict:
    from crawlers.sources import load_sources

    try:
        return load_sources(get_settings().sources_path)
    except ConfigError as exc:
        # Source health and attribution lines need the files, but a broken one must not stop the digest.
        log.warning("digest: source files not loaded (%s); attribution and quiet sources are left out", exc)
        return {}


def _load_entries(session: Session, ids: list[int], findings, attributions, base_url: str,
                  taxonomy) -> dict[int, NoticeEntry]:
    entries = {}
    for chunk in _chunks(ids):
        rows = session.exec(select(
            Notice.id, Notice.source, Notice.title, func.substr(Notice.text, 1, 1500), Notice.url, Notice.published,
            Notice.risk_labels, Notice.labels, Notice.product_name,
        ).where(Notice.id.in_(chunk)))
        for notice_id, source, title, text, url, published, risk_labels, labels, product in rows:
            rows_for = findings.get(notice_id, ())
            severity, why = notice_severity(((a, v, s) for a, v, s, _ in rows_for), risk_labels or (),
                                            labels if isinstance(labels, dict) else {},
                                            name=lambda node: label_for(node, taxonomy))
            hazards = tuple(sorted({v for a, v, _, _ in rows_for if a == "hazard"}))
            original = _http_url(url)
            entries[notice_id] = NoticeEntry(
                id=notice_id, source=source, source_title=attributions.get(source, (source, ""))[0],
                title=_one_line(title or product, 200) or f"Notice {notice_id}", excerpt=_one_line(text, 280),
                link=f"{base_url}/notices/{notice_id}", original_url=original,
                original_host=urlsplit(original).hostname or "" if original else "",
                published=published, published_label=_day_label(published), severity=severity, severity_why=why,
                markets=tuple(sorted({v for a, v, _, _ in rows_for if a == "jurisdiction"})),
                categories=tuple(sorted({v for a, v, _, _ in rows_for if a == "category"})),
                hazards=hazards, hazard_labels=", ".join(label_for(h, taxonomy) for h in hazards[:4]),
            )
    return entries


def _load_incidents(session: Session, ids: list[int]) -> dict[int, _IncidentRef]:
    out = {}
    for chunk in _chunks(ids):
        rows = session.exec(select(IncidentMember.notice_id, Incident.id, Incident.title, Incident.method,
                                   Incident.confidence)
                            .join(Incident, Incident.id == IncidentMember.incident_id)
                            .where(IncidentMember.notice_id.in_(chunk)).order_by(Incident.id))
        for notice_id, incident_id, title, method, confidence in rows:
            out.setdefault(notice_id, _IncidentRef(incident_id, title or "", method, confidence))
    return out


def _load_proposals(session: Session) -> list[tuple[Proposal, ImpactEstimate | None]]:
    proposals = list(session.exec(select(Proposal).where(Proposal.status == "pending")
                                  .order_by(Proposal.created_at, Proposal.id)))
    latest: dict[int, ImpactEstimate] = {}
    for chunk in _chunks([p.id for p in proposals]):
        for estimate in session.exec(select(ImpactEstimate).where(ImpactEstimate.proposal_id.in_(chunk))
                                     .order_by(ImpactEstimate.created_at, ImpactEstimate.id)):
            latest[estimate.proposal_id] = estimate  # ordered, so the newest wins
    return [(p, latest.get(p.id)) for p in proposals]


def _source_health(session: Session, sources: dict, end: datetime, quiet_days: int) -> list[SourceHealthItem]:
    newest = (select(SourceRun.source, func.max(SourceRun.id).label("id"))
              .where(SourceRun.started_at < end).group_by(SourceRun.source).subquery())
    runs = {run.source: run for run in session.exec(select(SourceRun).join(newest, SourceRun.id == newest.c.id))}
    names = [n for n, s in sources.items() if s.enabled] if sources else sorted(runs)
    quiet_before = end - timedelta(days=quiet_days)
    out = []
    for name in names:
        title = sources[name].title if name in sources else name
        run = runs.get(name)
        if run is None:
            out.append(SourceHealthItem(name, title, "never run", "never", "no run recorded"))
            continue
        started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=timezone.utc)
        when = f"{started:%d %b %Y %H:%M} UTC"
        if run.status in ("failed", "partial"):
            detail = _one_line(run.messages[0], 200) if run.messages else f"{run.errors} errors, {run.records} records"
            out.append(SourceHealthItem(name, title, run.status, when, detail))
        elif started < quiet_before:
            days = (end - started).days
            out.append(SourceHealthItem(name, title, "quiet", when, f"no run for {days} days"))
    return out


# -- sections ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """A part of the digest: a builder (archive, subscription) -> data, and templates _<name>.html/.txt."""

    name: str
    title: str
    order: int
    build: Callable[[WeekArchive, SubscriptionView], Any]
    empty_text: str


SECTIONS: dict[str, Section] = {}


def register_section(name: str, *, title: str, order: int, empty_text: str = "Nothing this week."):
    """Register a digest section; its templates are templates/digest/_<name>.html and _<name>.txt.

    The builder returns the section's data; its ``count`` attribute (or its length) says how many
    entries it holds, and a section with none shows ``empty_text``. The built-in sections below
    register this way too.
    """
    def decorator(build: Callable[[WeekArchive, SubscriptionView], Any]):
        SECTIONS[name] = Section(name, title, order, build, empty_text)
        return build
    return decorator


def _in_scope(sub: SubscriptionView, markets: Iterable[str], categories: Iterable[str], *, related: bool = False) -> bool:
    """Does something with these jurisdictions and categories belong in the subscription's digest?

    Notices (related=False) match a market when one of their jurisdictions is the market's or below
    it, as search does. Signals, laws and proposals (related=True) also match from above: an EU-wide
    law concerns a DE subscription. Nothing to compare (no market on either side) matches.
    """
    test = _related if related else _under
    markets, categories = list(markets), list(categories)
    if sub.jurisdictions and (markets or not related):
        if not any(test(m, j) for m in markets for j in sub.jurisdictions):
            return False
    if sub.categories and (categories or not related):
        if not any(test(c, p) for c in categories for p in sub.categories):
            return False
    return True


_KIND_LABELS = {"spike": "Spike", "legislation": "New law", "incident": "Incident", "deadline": "Date"}


def _signal_headline(archive: WeekArchive, signal: Signal) -> str:
    details = signal.details if isinstance(signal.details, dict) else {}
    if isinstance(details.get("title"), str) and details["title"].strip():
        return _one_line(details["title"], 160)
    scope = [archive.label(x) for x in (signal.category, signal.hazard) if x]
    where = archive.label(signal.jurisdiction) if signal.jurisdiction else ""
    text = " · ".join(scope) or "All categories"
    return _one_line(f"{text} in {where}" if where else text, 160)


def _signal_links(archive: WeekArchive, signal: Signal) -> tuple[list[NoticeLink], int]:
    ids = [i for i in (signal.notice_ids or []) if isinstance(i, int)]
    links = [archive.signal_notices[i] for i in ids[:5] if i in archive.signal_notices]
    return links, max(0, len(ids) - len(links))


@register_section("signals", title="Top signals", order=10, empty_text="No signals for your markets and categories this week.")
def build_signals(archive: WeekArchive, sub: SubscriptionView) -> list[SignalItem]:
    wanted = [s for s in archive.signals
              if _in_scope(sub, [s.jurisdiction] if s.jurisdiction else [], [s.category] if s.category else [], related=True)]
    wanted.sort(key=lambda s: (-s.score, -s.count, s.id))
    items = []
    for rank, signal in enumerate(wanted[: int(get_settings().digest_top_signals)], start=1):
        links, more = _signal_links(archive, signal)
        items.append(SignalItem(
            id=signal.id, rank=rank, kind=signal.kind, kind_label=_KIND_LABELS.get(signal.kind, signal.kind.title()),
            headline=_signal_headline(archive, signal), reason=_one_line(signal.reason, 300) or "(no reason recorded)",
            score=round(signal.score, 2), notices=links, more_notices=more,
        ))
    return items


_LINKED_BY = {"gtin": "same GTIN", "brand_model": "same brand and model", "text": "similar text"}


@register_section("notices", title="New high-risk notices", order=20,
                  empty_text="No new notices at or above your severity threshold this week.")
def build_notices(archive: WeekArchive, sub: SubscriptionView) -> NoticesSection:
    entries = [e for e in archive.notices.values()
               if SEVERITY_RANK[e.severity] >= sub.min_rank and _in_scope(sub, e.markets, e.categories)]
    # One item per incident: several sources reporting the same product are one thing to decide on.
    items: dict[Any, list[NoticeEntry]] = {}
    for entry in entries:
        ref = archive.incidents.get(entry.id)
        items.setdefault(("incident", ref.id) if ref else ("notice", entry.id), []).append(entry)
    grouped: dict[tuple[str, str], list[IncidentItem]] = defaultdict(list)
    for key, members in items.items():
        members.sort(key=lambda e: (-SEVERITY_RANK[e.severity], e.published or date.min, e.id))
        worst = members[0]
        ref = archive.incidents.get(worst.id) if key[0] == "incident" else None
        item = IncidentItem(
            incident_id=ref.id if ref else None, title=(ref.title if ref and ref.title else worst.title),
            severity=worst.severity, severity_why=worst.severity_why, notices=members[:MAX_NOTICES_PER_ITEM],
            linked_by=_LINKED_BY.get(ref.method, ref.method) if ref else "",
            source_titles=", ".join(dict.fromkeys(m.source_title for m in members)),
            more_notices=max(0, len(members) - MAX_NOTICES_PER_ITEM),
        )
        grouped[(_primary_market(sub, members), _primary_category(sub, members))].append(item)
    market_order = {j: i for i, j in enumerate(sub.jurisdictions)}
    keys = sorted(grouped, key=lambda k: (market_order.get(k[0], len(market_order)), k[0] == "", k[0],
                                          -len(grouped[k]), k[1] == "", k[1]))
    limit = int(get_settings().digest_section_limit)
    groups, shown = [], 0
    for key in keys:
        group_items = sorted(grouped[key], key=lambda it: (-SEVERITY_RANK[it.severity], -len(it.notices), it.title))
        take = group_items[: max(0, limit - shown)]
        shown += len(take)
        if take:
            groups.append(NoticeGroup(archive.label(key[0]) if key[0] else "Other markets",
                                      archive.label(key[1]) if key[1] else "Uncategorised", take))
    total = sum(len(v) for v in grouped.values())
    used_sources = sorted({e.source for e in entries})
    attributions = [archive.attributions[s] for s in used_sources if s in archive.attributions and archive.attributions[s][1]]
    sunday = archive.monday + timedelta(days=6)
    query = {"since": archive.monday.isoformat(), "until": sunday.isoformat()}
    more_link = f"{archive.base_url}/search?{urlencode(query)}"
    for code in sub.markets:
        more_link += "&" + urlencode({"market": code})
    for category in sub.categories:
        more_link += "&" + urlencode({"category": category})
    return NoticesSection(groups=groups, count=total, notice_count=len(entries), shown=shown, more=total - shown,
                          more_link=more_link, attributions=attributions, min_severity=sub.min_severity)


def _primary_market(sub: SubscriptionView, members: list[NoticeEntry]) -> str:
    markets = sorted({m for e in members for m in e.markets})
    for j in sub.jurisdictions:
        if any(_under(m, j) for m in markets):
            return j
    return _cut(markets[0], 3) if markets else ""


def _primary_category(sub: SubscriptionView, members: list[NoticeEntry]) -> str:
    categories = sorted({c for e in members for c in e.categories})
    for prefix in sub.categories:
        inside = [c for c in categories if _under(c, prefix)]
        if inside:
            return _cut(inside[0], max(2, prefix.count(".") + 1))
    return _cut(categories[0], 2) if categories else ""


_PROPOSAL_KINDS = {"new_rule": "New rule", "widen_markets": "More markets", "widen_categories": "More categories",
                   "add_terms": "More match terms", "change_action": "Stricter action"}


def _rule_scope(rule: dict) -> tuple[list[str], list[str]]:
    markets = rule.get("markets") or []
    categories = rule.get("categories") or []
    juris = [market_jurisdiction(str(m)) for m in (markets if isinstance(markets, list) else [markets])]
    cats = [str(c) for c in (categories if isinstance(categories, list) else [categories])]
    return [j for j in juris if j], cats


@register_section("proposals", title="Rule changes awaiting your review", order=30,
                  empty_text="No proposed rule changes are waiting for review.")
def build_proposals(archive: WeekArchive, sub: SubscriptionView) -> Listing:
    items = []
    for proposal, estimate in archive.proposals:
        markets, categories = _rule_scope(proposal.rule if isinstance(proposal.rule, dict) else {})
        if not _in_scope(sub, markets, categories, related=True):
            continue
        created = proposal.created_at if proposal.created_at.tzinfo else proposal.created_at.replace(tzinfo=timezone.utc)
        items.append(ProposalItem(
            id=proposal.id, title=_one_line(proposal.title, 200), kind_label=_PROPOSAL_KINDS.get(proposal.kind, proposal.kind),
            rule_id=proposal.rule_id, rationale=_one_line(proposal.rationale, 300),
            link=f"{archive.base_url}/proposals/{proposal.id}", estimate=_estimate_view(estimate) if estimate else None,
            age_days=max(0, (archive.end - created).days),
        ))
    return _capped(items, f"{archive.base_url}/proposals")


def _estimate_view(estimate: ImpactEstimate) -> EstimateView:
    interval = None
    if estimate.hits_low is not None and estimate.hits_high is not None and not estimate.exact:
        interval = (int(round(estimate.hits_low)), int(round(estimate.hits_high)))
    share = round(100.0 * estimate.hits / estimate.listings_scanned, 2) if estimate.listings_scanned else None
    created = estimate.created_at if estimate.created_at.tzinfo else estimate.created_at.replace(tzinfo=timezone.utc)
    return EstimateView(catalogue=_one_line(estimate.catalogue, 120), scanned=estimate.listings_scanned,
                        hits=estimate.hits, newly_hit=estimate.newly_hit, already_hit=estimate.already_hit,
                        exact=estimate.exact, interval=interval, share_percent=share, when=_day_label(created.date()))


@register_section("deadlines", title="Upcoming dates", order=40, empty_text="No dates in the next weeks.")
def build_deadlines(archive: WeekArchive, sub: SubscriptionView) -> Listing:
    items, seen = [], set()
    for signal in archive.deadlines:
        if signal.key in seen or signal.due is None:
            continue
        if not _in_scope(sub, [signal.jurisdiction] if signal.jurisdiction else [],
                         [signal.category] if signal.category else [], related=True):
            continue
        seen.add(signal.key)
        links, _ = _signal_links(archive, signal)
        items.append(DeadlineItem(id=signal.id, due=signal.due, due_label=f"{signal.due:%a} {_day_label(signal.due)}",
                                  days_left=(signal.due - archive.send_day).days,
                                  headline=_signal_headline(archive, signal), reason=_one_line(signal.reason, 300),
                                  notices=links))
    return _capped(items)


@register_section("charts", title="Twelve weeks at a glance", order=50, empty_text="No notices in these weeks.")
def build_charts(archive: WeekArchive, sub: SubscriptionView) -> list[Chart]:
    n = len(archive.weeks)
    by_category: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    by_market: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    # One subscribed category: show its children; otherwise the top-level categories.
    depth = sub.categories[0].count(".") + 2 if len(sub.categories) == 1 else 2
    for fact in archive.facts:
        if not _in_scope(sub, fact.markets, fact.categories):
            continue
        for key in {_cut(c, depth) for c in fact.categories}:
            by_category[key][fact.week] += 1
        if sub.jurisdictions:
            keys = {j for j in sub.jurisdictions if any(_under(m, j) for m in fact.markets)}
        else:
            keys = {_cut(m, 3) for m in fact.markets}
        for key in keys:
            by_market[key][fact.week] += 1
    charts = []
    for name, counts, what in (("categories", by_category, "category"), ("markets", by_market, "market")):
        series = _top_series(archive, counts)
        if not series:
            continue
        title = f"New notices per week by {what}, {archive.weeks[0]}–{archive.weeks[-1]}"
        key = (name, tuple(archive.weeks), tuple((k, tuple(v)) for k, v in series.items()))
        if key not in archive.chart_cache:
            from radar.charts import weekly_counts_png

            archive.chart_cache[key] = weekly_counts_png(archive.weeks, series, title)
        totals = ", ".join(f"{label} {sum(values)}" for label, values in series.items())
        charts.append(Chart(name=name, title=title, alt=f"{title}. Totals: {totals}.", png=archive.chart_cache[key],
                            text_lines=_text_table(archive.weeks, series)))
    return charts


def _top_series(archive: WeekArchive, counts: dict[str, list[int]], top: int = 6) -> dict[str, list[int]]:
    ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    ranked = [(k, v) for k, v in ranked if sum(v)]
    series = {archive.label(k): v for k, v in ranked[:top]}
    if len(ranked) > top:
        series["Other"] = [sum(col) for col in zip(*(v for _, v in ranked[top:]))]
    return series


def _text_table(weeks: list[str], series: dict[str, list[int]]) -> list[str]:
    # Fits 72 columns for 12 weeks: a 14-character label and 4 characters per week.
    cell = 4
    lines = [" " * 14 + "".join(w[-3:].rjust(cell) for w in weeks)]
    for label, values in series.items():
        short = label if len(label) <= 13 else label[:12] + "…"
        lines.append(short.ljust(14) + "".join(str(v).rjust(cell) for v in values))
    return lines


@register_section("sources", title="Source health", order=60, empty_text="Every source ran normally.")
def build_sources(archive: WeekArchive, sub: SubscriptionView) -> Listing:
    return _capped(list(archive.health), f"{archive.base_url}/sources")


def build_digest(engine: Engine, week: str, subscription: Subscription | SubscriptionView, *,
                 archive: WeekArchive | None = None) -> DigestData:
    """The digest of ``week`` for one subscription. Pass ``archive`` to build many from one read."""
    archive = archive or load_archive(engine, week)
    sub = SubscriptionView.of(subscription, archive.taxonomy)
    sections = []
    for section in sorted(SECTIONS.values(), key=lambda s: (s.order, s.name)):
        data = section.build(archive, sub)
        count = getattr(data, "count", None)
        count = count if isinstance(count, int) else len(data) if hasattr(data, "__len__") else int(bool(data))
        sections.append(SectionData(section.name, section.title, data, count, section.empty_text))
    return DigestData(week=archive.week, period=archive.period, subscription=sub, base_url=archive.base_url,
                      generated_at=utcnow(), sections=sections)


# -- followed saved searches (per recipient) ----------------------------------------------------------


def followed_searches(engine: Engine, archive: WeekArchive, recipients: Iterable[str]) -> dict[str, SectionData]:
    """Recipient (lower-case) -> a section of new matches of the saved searches that person follows.

    A person is a recipient whose address is an active user's email; "new" means published in the week.
    """
    from radar.errors import SearchQueryError
    from radar.search import search
    from radar.web.query import SearchParams

    wanted = {r.lower() for r in recipients}
    if not wanted:
        return {}
    with Session(engine) as session:
        rows = list(session.exec(select(SavedSearch, User.email).join(User, User.id == SavedSearch.user_id)
                                 .where(SavedSearch.follow == True, User.active == True)  # noqa: E712
                                 .order_by(SavedSearch.name)))
    sunday = archive.monday + timedelta(days=6)
    out: dict[str, list[FollowedSearch]] = defaultdict(list)
    for saved, email in rows:
        if not email or email.lower() not in wanted:
            continue
        try:
            # The saved search exactly as the search page runs it (every filter), limited to the week.
            wanted_search = replace(SearchParams.from_saved(saved.query or "", saved.params if isinstance(saved.params, dict) else {}),
                                    since=archive.monday, until=sunday, sort="date", page=1)
            filters = wanted_search.filters(lambda code: market_jurisdiction(code, archive.taxonomy))
            result = search(engine, wanted_search.q, filters, limit=10)
        except SearchQueryError as exc:
            log.warning("saved search %r of %s skipped in the digest: %s", saved.name, email, exc)
            continue
        if not result.total:
            continue
        out[email.lower()].append(FollowedSearch(
            name=_one_line(saved.name, 120), query=_one_line(saved.query, 120), total=result.total,
            hits=[NoticeLink(h.id, _one_line(h.title, 160), archive.notice_url(h.id), h.source) for h in result.hits],
            link=archive.base_url + wanted_search.url(),
        ))
    return {email: SectionData("followed", "Your followed searches", items, sum(i.total for i in items), "")
            for email, items in out.items()}


# -- rendering -----------------------------------------------------------------------------------------

_LONG_RUN = re.compile(r"\S{25,}")


def _breakable(value: Any) -> Any:
    """HTML-escape, then allow line breaks (<wbr>) inside runs of 25+ characters without a space.

    CSS word-break covers most clients; <wbr> covers those that drop it, so one endless word cannot
    push the layout wider than a phone.
    """
    from markupsafe import Markup, escape

    text = "" if value is None else str(value)
    out, last = [], 0
    for match in _LONG_RUN.finditer(text):
        out.append(escape(text[last:match.start()]))
        run = match.group(0)
        out.append(Markup("<wbr>").join(escape(run[i:i + 20]) for i in range(0, len(run), 20)))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _wrap(value: Any, width: int = TEXT_WIDTH, indent: int = 0, first: int | None = None) -> str:
    """Plain text wrapped to ``width`` columns; words longer than a line are broken."""
    lead = " " * (indent if first is None else first)
    return textwrap.fill(" ".join(str(value or "").split()), width=width, initial_indent=lead,
                         subsequent_indent=" " * indent, break_long_words=True, break_on_hyphens=False) or lead


def _counted(value: int, noun: str, plural: str | None = None) -> str:
    """"1 rule change", "2 rule changes": the number with its noun in the right number."""
    return f"{_number(value)} {noun if value == 1 else (plural or noun + 's')}"


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    # HTML is autoescaped; the .txt templates are plain text, where escaping would only garble "<" and "&".
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                      autoescape=select_autoescape(enabled_extensions=("html", "htm"), default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["breakable"] = _breakable
    env.filters["wrap"] = _wrap
    env.filters["number"] = _number
    env.filters["counted"] = _counted
    return env


def _templates(language: str, name: str) -> list[str]:
    """A language's own template first (templates/digest/<lang>/<name>), then the English one."""
    return [f"digest/{language}/{name}", f"digest/{name}"] if language != "en" else [f"digest/{name}"]


_CLASS_ATTR = re.compile(r' class="([^"<>]*)"')
_MEDIA_CLASSES = frozenset({"container", "section", "summary", "footer", "header", "headline"})


def _drop_unused_classes(html: str) -> str:
    """Remove class attributes once their rules are inlined, but for the ones the phone @media rules use.

    Gmail clips an email whose HTML passes 102 KB; the class names are dead weight by now.
    """
    def keep(match: re.Match) -> str:
        used = [c for c in match.group(1).split() if c in _MEDIA_CLASSES]
        return f' class="{" ".join(used)}"' if used else ""
    return _CLASS_ATTR.sub(keep, html)


def subject_of(data: DigestData) -> str:
    parts = [f"{data.count('signals')} signals", f"{data.count('notices')} new high-risk",
             f"{data.count('proposals')} to review"]
    name = " ".join(data.subscription.name.split())  # a header cannot hold a line break
    return f"Risk radar {data.week} ({name}): " + ", ".join(parts)


def render_digest(data: DigestData, *, images: str = "cid", followed: SectionData | None = None) -> RenderedDigest:
    """Subject, HTML and text of a digest. ``images``: "cid" for an email, "data" to inline them (previews)."""
    import css_inline

    if images not in ("cid", "data"):
        raise ValueError("images must be 'cid' or 'data'")
    env = _environment()
    sections = list(data.sections) + ([followed] if followed and followed.count else [])
    charts = data.charts
    sources = {c.name: (f"cid:{c.cid}" if images == "cid" else
                        "data:image/png;base64," + base64.b64encode(c.png).decode("ascii")) for c in charts}
    subject = subject_of(data)
    language = data.subscription.language or "en"
    context = {
        "data": data, "sub": data.subscription, "sections": sections, "subject": subject, "chart_src": sources,
        "base_url": data.base_url, "language": language,
        "template_for": lambda name: _templates(language, name),
    }
    html = env.select_template(_templates(language, "digest.html")).render(context)
    html = re.sub(r"\n[ \t]+", "\n", html)  # template indentation: bytes only, HTML collapses it anyway
    # Many email clients ignore <style>: css-inline copies every rule onto the elements it styles.
    # @media rules (the phone layout) cannot be inlined and stay in a <style> for the clients that read it.
    html = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False, minify_css=True).inline(html)
    html = _drop_unused_classes(html)
    text = env.select_template(_templates(language, "digest.txt")).render(context)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return RenderedDigest(subject=subject, html=html, text=text, charts=charts)


def compose_message(rendered: RenderedDigest, *, sender: str, to: str | Sequence[str], message_id: str | None = None,
                    week: str = "", subscription_id: int | None = None) -> EmailMessage:
    """multipart/alternative: text/plain, then multipart/related (text/html + the PNG charts by cid)."""
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = sender
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(domain=_sender_domain(sender))
    # Tells auto-responders and mail rules this is a machine's report, not a person writing.
    msg["Auto-Submitted"] = "auto-generated"
    if week:
        msg["X-Radar-Digest"] = f"{week}; subscription={subscription_id}"
    # Quoted-printable keeps the body 7-bit with short lines, whatever the server's 8BITMIME support.
    msg.set_content(rendered.text, cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html")
    html_part = msg.get_payload()[1]
    for chart in rendered.charts:
        html_part.add_related(chart.png, maintype="image", subtype="png", cid=f"<{chart.cid}>",
                              filename=f"{chart.name}.png", disposition="inline")
    return msg


def _sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "radar.localhost"


def render_preview(engine: Engine, week: str, subscription_id: int) -> tuple[str, str]:
    """(html, text) of one subscription's digest for the web app, with the charts inlined as data: URIs."""
    with Session(engine, expire_on_commit=False) as session:
        row = get_subscription(session, subscription_id)
    rendered = render_digest(build_digest(engine, week, row), images="data")
    return rendered.html, rendered.text


# -- sending -----------------------------------------------------------------------------------------


@dataclass
class DeliveryResult:
    week: str
    subscription: str
    recipient: str
    status: str
    attempts: int
    error: str = ""
    message_id: str | None = None


@dataclass
class SendReport:
    """What a run did: sent, failed (to be retried), given up, in doubt, and what stopped it if anything."""

    weeks: list[str]
    preview: bool = False
    subscriptions: int = 0
    sent: list[DeliveryResult] = field(default_factory=list)
    failed: list[DeliveryResult] = field(default_factory=list)
    gave_up: list[DeliveryResult] = field(default_factory=list)
    in_doubt: list[DeliveryResult] = field(default_factory=list)
    already_sent: int = 0
    not_attempted: int = 0
    files: list[Path] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.failed or self.gave_up or self.in_doubt or self.error)

    def lines(self) -> list[str]:
        weeks = ", ".join(self.weeks)
        if self.preview:
            return [f"digest {weeks}: {self.subscriptions} subscription(s) previewed, {len(self.files)} files written"]
        out = [f"digest {weeks}: {len(self.sent)} sent, {self.already_sent} already sent earlier, "
               f"{len(self.failed)} failed (retried next run), {len(self.gave_up)} given up, "
               f"{len(self.in_doubt)} in doubt, {self.not_attempted} left pending"]
        for r in self.failed:
            out.append(f"  failed   {r.week} {r.subscription} → {r.recipient} (attempt {r.attempts}): {r.error}")
        for r in self.gave_up:
            out.append(f"  gave up  {r.week} {r.subscription} → {r.recipient} after {r.attempts} attempts: {r.error}")
        for r in self.in_doubt:
            out.append(f"  in doubt {r.week} {r.subscription} → {r.recipient}: a run stopped while sending "
                       f"{r.message_id or ''}; check the mail server log, then `radar digest --week {r.week} "
                       "--retry-interrupted` if it never arrived")
        if self.error:
            out.append(f"  stopped: {self.error}")
        return out


class SmtpSender:
    """One SMTP connection for a run: STARTTLS and login from settings, the password from the environment."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> None:
        if self._smtp is not None:
            return
        s = self.settings
        password = os.environ.get(PASSWORD_ENV, "")
        if s.smtp_username and not password:
            raise DigestError(f"smtp_username is {s.smtp_username!r} but {PASSWORD_ENV} is empty; "
                              f"export the SMTP password in {PASSWORD_ENV} (it is never read from a file)")
        try:
            smtp = smtplib.SMTP(s.smtp_host, int(s.smtp_port), timeout=float(s.smtp_timeout))
        except OSError as exc:
            raise DigestError(f"cannot reach the SMTP server {s.smtp_host}:{s.smtp_port}: {exc}; "
                              "check smtp_host and smtp_port") from exc
        try:
            smtp.ehlo()
            if s.smtp_starttls:
                context = ssl.create_default_context(cafile=s.smtp_ca_file or None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, password)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise DigestError(f"the SMTP server {s.smtp_host} refused the login of {s.smtp_username!r} "
                              f"({exc.smtp_code}); check smtp_username and {PASSWORD_ENV}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            smtp.close()
            raise DigestError(f"the SMTP server {s.smtp_host}:{s.smtp_port} does not offer STARTTLS or AUTH ({exc}); "
                              "use its submission port or set smtp_starttls = false only on a trusted network") from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            smtp.close()
            raise DigestError(f"SMTP set-up with {s.smtp_host}:{s.smtp_port} failed: {exc}") from exc
        self._smtp = smtp

    def send(self, msg: EmailMessage, recipient: str) -> None:
        """Hand one message to the server for one recipient; returns once the server accepted it."""
        self.connect()
        envelope_from = parseaddr(self.settings.smtp_from)[1] or self.settings.smtp_from
        assert self._smtp is not None
        self._smtp.send_message(msg, from_addr=envelope_from, to_addrs=[recipient])

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


_T = DigestDelivery.__table__


def _claim(engine: Engine, row: DigestDelivery, message_id: str) -> bool:
    """Compare-and-set pending/failed -> sending: only one run can win a delivery, whatever runs at once."""
    with engine.begin() as connection:
        result = connection.execute(
            update(_T).where(_T.c.id == row.id, _T.c.status == row.status, _T.c.attempts == row.attempts)
            .values(status="sending", attempts=row.attempts + 1, message_id=message_id, last_error="")
        )
        return result.rowcount == 1


def _finish(engine: Engine, row_id: int, status: str, error: str = "") -> None:
    values: dict[str, Any] = {"status": status, "last_error": error[:2000]}
    if status == "sent":
        values["sent_at"] = utcnow()
    with engine.begin() as connection:
        connection.execute(update(_T).where(_T.c.id == row_id, _T.c.status == "sending").values(**values))


def ensure_deliveries(engine: Engine, week: str, subscriptions: Sequence[SubscriptionView]) -> int:
    """Create the pending delivery rows of a week (one per subscription and recipient); returns how many are new.

    Rows exist before anything is sent, so a run that dies half-way leaves the rest visibly pending.
    """
    created = 0
    with Session(engine) as session:
        ids = [s.id for s in subscriptions]
        existing = {(sid, r) for sid, r in session.exec(
            select(DigestDelivery.subscription_id, DigestDelivery.recipient)
            .where(DigestDelivery.week == week, DigestDelivery.subscription_id.in_(ids)))} if ids else set()
        for sub in subscriptions:
            for recipient in sub.recipients:
                if (sub.id, recipient) in existing:
                    continue
                try:
                    with session.begin_nested():
                        session.add(DigestDelivery(week=week, subscription_id=sub.id, recipient=recipient))
                    created += 1
                except IntegrityError:
                    log.debug("delivery %s/%s/%s created by another run", week, sub.id, recipient)
        session.commit()
    return created


def _active_subscriptions(engine: Engine, only: str | None) -> list[SubscriptionView]:
    taxonomy = taxonomy_or_none()
    with Session(engine, expire_on_commit=False) as session:
        if only is not None:
            rows = [get_subscription(session, only)]
        else:
            rows = list(session.exec(select(Subscription).where(Subscription.active == True)  # noqa: E712
                                     .order_by(Subscription.id)))
    return [SubscriptionView.of(row, taxonomy) for row in rows]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "subscription"


def write_previews(engine: Engine, week: str, directory: Path, subscriptions: Sequence[SubscriptionView],
                   archive: WeekArchive | None = None) -> list[Path]:
    """Write <week>-<id>-<name>.eml/.html/.txt per subscription; nothing is sent or recorded."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = archive or load_archive(engine, week)
    sender = get_settings().smtp_from
    files = []
    for sub in subscriptions:
        data = build_digest(engine, week, sub, archive=archive)
        for_email = render_digest(data, images="cid")
        stem = directory / f"{archive.week}-{sub.id}-{_slug(sub.name)}"
        msg = compose_message(for_email, sender=sender, to=list(sub.recipients) or ["preview@example.invalid"],
                              week=archive.week, subscription_id=sub.id)
        paths = [stem.with_suffix(".eml"), stem.with_suffix(".html"), stem.with_suffix(".txt")]
        paths[0].write_bytes(msg.as_bytes())
        paths[1].write_text(render_digest(data, images="data").html, encoding="utf-8")
        paths[2].write_text(for_email.text, encoding="utf-8")
        files.extend(paths)
    return files


def send_week(engine: Engine, week: str | None = None, *, preview_dir: Path | None = None,
              subscription: str | None = None, progress: Callable[[DeliveryResult], None] | None = None,
              report: SendReport | None = None, new_deliveries: bool = True) -> SendReport:
    """Send (or with ``preview_dir`` write) the digests of ``week`` (default: the last complete week).

    Exactly once per (week, subscription, recipient): already sent rows are skipped, a row another run
    is sending (or a crashed run left "sending") is reported as in doubt and not sent again, refused
    recipients are marked failed and retried by the next run until digest_max_attempts.
    ``new_deliveries=False`` only retries rows that exist (a recipient added since gets no old week).
    """
    settings = get_settings()
    week = week_of(parse_week(week)) if week else last_complete_week()
    report = report or SendReport(weeks=[])
    report.weeks.append(week)
    subs = _active_subscriptions(engine, subscription)
    report.subscriptions += len(subs)
    if preview_dir is None and any(not sub.active for sub in subs):
        raise DigestError(f"subscription {subs[0].name!r} is inactive; activate it with "
                          f"`radar subscriptions update {subs[0].name!r} --active`, or use --preview")
    if preview_dir is not None:
        report.preview = True
        report.files.extend(write_previews(engine, week, Path(preview_dir), subs))
        return report
    if new_deliveries:
        ensure_deliveries(engine, week, subs)
    max_attempts = int(settings.digest_max_attempts)
    with Session(engine, expire_on_commit=False) as session:
        ids = [s.id for s in subs]
        rows = list(session.exec(select(DigestDelivery).where(DigestDelivery.week == week,
                                                              DigestDelivery.subscription_id.in_(ids))
                                 .order_by(DigestDelivery.subscription_id, DigestDelivery.id))) if ids else []
    by_sub: dict[int, list[DigestDelivery]] = defaultdict(list)
    names = {s.id: s.name for s in subs}
    for row in rows:
        name = names[row.subscription_id]
        if row.status == "sent":
            report.already_sent += 1
        elif row.status == "sending":
            report.in_doubt.append(DeliveryResult(week, name, row.recipient, row.status, row.attempts, row.last_error,
                                                  row.message_id))
        elif row.attempts >= max_attempts:
            report.gave_up.append(DeliveryResult(week, name, row.recipient, row.status, row.attempts, row.last_error))
        else:
            by_sub[row.subscription_id].append(row)
    if not by_sub:
        _log_report(report)
        return report
    archive = load_archive(engine, week)
    sender = SmtpSender()
    try:
        _deliver(engine, archive, [s for s in subs if s.id in by_sub], by_sub, sender, report, max_attempts, progress)
    finally:
        sender.close()
    _log_report(report)
    return report


def _deliver(engine, archive, subs, by_sub, sender, report, max_attempts, progress) -> None:
    settings = get_settings()
    pending_total = sum(len(v) for v in by_sub.values())
    done = 0
    try:
        sender.connect()  # before claiming anything: an unreachable server must not use up attempts
    except DigestError as exc:
        report.error = str(exc)
        report.not_attempted += pending_total
        return
    followed = followed_searches(engine, archive, [r.recipient for rows in by_sub.values() for r in rows])
    for sub in subs:
        data = build_digest(engine, archive.week, sub, archive=archive)
        shared = render_digest(data)
        for row in by_sub[sub.id]:
            if row.recipient not in sub.recipients:
                log.info("digest %s: %s is no longer a recipient of %r; not sent", archive.week, row.recipient, sub.name)
                done += 1
                continue
            extra = followed.get(row.recipient.lower())
            rendered = render_digest(data, followed=extra) if extra else shared
            message_id = make_msgid(domain=_sender_domain(settings.smtp_from))
            try:
                msg = compose_message(rendered, sender=settings.smtp_from, to=row.recipient, message_id=message_id,
                                      week=archive.week, subscription_id=sub.id)
                problem = ""
            except (ValueError, TypeError) as exc:  # an address no header can hold (a line break, say)
                msg, problem = None, f"cannot address a message to {row.recipient!r}: {exc}"
            if not _claim(engine, row, message_id):
                log.info("digest %s: delivery to %s taken by another run", archive.week, row.recipient)
                done += 1
                continue
            attempts = row.attempts + 1
            result = DeliveryResult(archive.week, sub.name, row.recipient, "sent", attempts, problem, message_id)
            stop = None
            try:
                if msg is not None:
                    sender.send(msg, row.recipient)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()), (0, b""))
                result.error = f"{code} {_decode(text)}".strip()
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                result.error = f"{exc.smtp_code} {_decode(exc.smtp_error)}".strip()
            except (smtplib.SMTPException, OSError, DigestError) as exc:
                # The connection broke mid-message: this one is marked failed (so retried), the rest
                # stay pending for the next run rather than failing one by one against a dead server.
                result.error = f"connection lost: {exc}"
                stop = result.error
            if result.error:
                result.status = "failed"
                _finish(engine, row.id, "failed", result.error)
                (report.gave_up if attempts >= max_attempts else report.failed).append(result)
                log.warning("digest %s for %r to %s failed (attempt %d): %s", archive.week, sub.name, row.recipient,
                            attempts, result.error)
            else:
                _finish(engine, row.id, "sent")
                report.sent.append(result)
            done += 1
            if progress:
                progress(result)
            if stop:
                report.error = stop
                report.not_attempted += pending_total - done
                return


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _log_report(report: SendReport) -> None:
    for line in report.lines():
        log.info("%s", line)


def retry_interrupted(engine: Engine, week: str) -> int:
    """Put deliveries left "sending" by a crashed run back in the queue (an operator's decision)."""
    week = week_of(parse_week(week))
    with engine.begin() as connection:
        result = connection.execute(update(_T).where(_T.c.week == week, _T.c.status == "sending")
                                    .values(status="failed", last_error="interrupted while sending; released for retry"))
    return result.rowcount


def retry_failed(engine: Engine, *, weeks: int = RETRY_WEEKS, before: str | None = None,
                 report: SendReport | None = None) -> SendReport:
    """Send again what earlier weeks left pending or failed (within ``weeks`` weeks before ``before``)."""
    report = report or SendReport(weeks=[])
    latest = parse_week(before or last_complete_week())
    earliest = week_of(latest - timedelta(days=7 * weeks))
    max_attempts = int(get_settings().digest_max_attempts)
    with Session(engine) as session:
        due = sorted(set(session.exec(
            select(DigestDelivery.week).where(DigestDelivery.status.in_(("pending", "failed")),
                                              DigestDelivery.attempts < max_attempts,
                                              DigestDelivery.week >= earliest,
                                              DigestDelivery.week < week_of(latest)))))
    for week in due:
        send_week(engine, week, report=report, new_deliveries=False)
    return report


def run_weekly(engine: Engine) -> SendReport:
    """The scheduled job: send last week's digests, then retry what earlier weeks left undelivered."""
    report = send_week(engine)
    retry_failed(engine, before=report.weeks[0], report=report)
    return report
