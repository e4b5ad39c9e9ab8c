"""Digest subscriptions: who receives the weekly digest, for which markets, categories and severity."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from radar.errors import ConfigError, RadarError
from radar.models import DigestDelivery, Subscription

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "serious")
"""Severity levels, least to most severe; a subscription's min_severity is one of them."""
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+$")
_LANGUAGE = re.compile(r"^[a-z]{2}$")
_CATEGORY = re.compile(r"^cat(\.[a-z0-9][a-z0-9_]*)*$")
_MARKET_CODE = re.compile(r"^[A-Za-z]{2,3}$")

# Used only while the taxonomy (config/taxonomy/jurisdictions.yml) cannot be loaded: the ids follow the
# taxonomy's scheme (EU member states under juris.eu, the UK and others at the top).
_EU_MEMBERS = set("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split())
_FALLBACK_ALIASES = {"UK": "GB", "EL": "GR"}


class SubscriptionError(RadarError):
    """A subscription value is invalid, or the subscription named does not exist."""


# -- the taxonomy, when it can be loaded ------------------------------------------------------------

_taxonomy_failed: set[str] = set()


def taxonomy_or_none():
    """The loaded taxonomy, or None while it is missing or invalid (the digest then uses plain fallbacks)."""
    from radar.settings import get_settings

    path = get_settings().taxonomy_path
    try:
        from nlp.taxonomy import load_cached

        return load_cached(path)
    except (ConfigError, ImportError, OSError) as exc:
        if str(path) not in _taxonomy_failed:
            _taxonomy_failed.add(str(path))
            log.info("taxonomy at %s not usable (%s); market codes and labels use built-in fallbacks", path, exc)
        return None


def market_jurisdiction(code: str, taxonomy: Any = None) -> str | None:
    """The jurisdiction id of a market code (DE, FR, UK, EU, ...); a juris.* id is returned as is."""
    code = (code or "").strip()
    if not code:
        return None
    if code.startswith("juris."):
        return code
    taxonomy = taxonomy if taxonomy is not None else taxonomy_or_none()
    if taxonomy is not None:
        return taxonomy.jurisdiction_for_market(code)
    if not _MARKET_CODE.match(code):
        return None
    upper = _FALLBACK_ALIASES.get(code.upper(), code.upper())
    if upper == "EU":
        return "juris.eu"
    if upper == "GB":
        return "juris.uk"
    if upper in _EU_MEMBERS:
        return f"juris.eu.{upper.lower()}"
    return f"juris.{upper.lower()}"


def label_for(node_id: str | None, taxonomy: Any = None) -> str:
    """A reader's name for a taxonomy id: the taxonomy's label, else the id's last part in words."""
    if not node_id:
        return ""
    taxonomy = taxonomy if taxonomy is not None else taxonomy_or_none()
    node = taxonomy.get(node_id) if taxonomy is not None else None
    if node is not None:
        return node.label
    tail = node_id.rsplit(".", 1)[-1]
    if node_id.startswith("juris.") and len(tail) == 2:
        return tail.upper()
    return tail.replace("_", " ").capitalize()


# -- a subscription as the digest reads it ------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription with its market codes resolved to jurisdiction ids, detached from any session."""

    id: int
    name: str
    recipients: tuple[str, ...]
    markets: tuple[str, ...]  # as the user wrote them (DE, FR, EU)
    jurisdictions: tuple[str, ...]  # the matching taxonomy ids, same order
    categories: tuple[str, ...]
    min_severity: str = "medium"
    language: str = "en"
    active: bool = True
    unknown_markets: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, row: Subscription | SubscriptionView, taxonomy: Any = None) -> SubscriptionView:
        if isinstance(row, SubscriptionView):
            return row
        jurisdictions, unknown = [], []
        for code in row.markets or []:
            found = market_jurisdiction(code, taxonomy)
            if found:
                jurisdictions.append(found)
            else:
                unknown.append(code)
        if unknown:
            log.warning("subscription %r: market(s) %s have no jurisdiction in the taxonomy and are ignored",
                        row.name, ", ".join(unknown))
        return cls(
            id=row.id, name=row.name, recipients=tuple(row.recipients or ()), markets=tuple(row.markets or ()),
            jurisdictions=tuple(dict.fromkeys(jurisdictions)), categories=tuple(row.categories or ()),
            min_severity=row.min_severity if row.min_severity in SEVERITY_RANK else "medium",
            language=row.language or "en", active=row.active, unknown_markets=tuple(unknown),
        )

    @property
    def min_rank(self) -> int:
        return SEVERITY_RANK[self.min_severity]

    def describe(self) -> str:
        """One line for the footer of the email: what this subscription selects."""
        markets = ", ".join(self.markets) if self.markets else "all markets"
        categories = ", ".join(self.categories) if self.categories else "all categories"
        return f"{markets}; {categories}; severity {self.min_severity} and above"


# -- validation ---------------------------------------------------------------------------------------


def clean_recipients(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        address = (value or "").strip()
        if not _EMAIL.match(address):
            raise SubscriptionError(f"recipient {value!r} is not an email address like team@example.org")
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out


def clean_markets(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    taxonomy = taxonomy_or_none()
    for value in values:
        code = (value or "").strip()
        code = code if code.startswith("juris.") else code.upper()
        if not market_jurisdiction(code, taxonomy):
            raise SubscriptionError(f"unknown market {value!r}; use an ISO country code such as DE, FR, UK, or EU")
        if code not in out:
            out.append(code)
    return out


def clean_categories(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    taxonomy = taxonomy_or_none()
    for value in values:
        category = (value or "").strip()
        if not _CATEGORY.match(category) or category == "cat":
            raise SubscriptionError(f"category {value!r} is not a category id such as cat.toys or cat.toys.magnetic")
        if taxonomy is not None and len(taxonomy.axis("category")) and category not in taxonomy:
            raise SubscriptionError(f"category {value!r} is not in the taxonomy ({taxonomy.directory}); "
                                    "see config/taxonomy/categories.yml for the ids")
        if category not in out:
            out.append(category)
    return out


def clean_severity(value: str) -> str:
    value = (value or "").strip().lower()
    if value not in SEVERITY_RANK:
        raise SubscriptionError(f"min severity {value!r} is not one of {', '.join(SEVERITIES)}")
    return value


def clean_language(value: str) -> str:
    value = (value or "").strip().lower()
    if not _LANGUAGE.match(value):
        raise SubscriptionError(f"language {value!r} is not a two-letter ISO 639-1 code such as en")
    return value


def clean_name(value: str) -> str:
    name = " ".join((value or "").split())
    if not name or len(name) > 200:
        raise SubscriptionError(f"subscription name {value!r} must be 1 to 200 characters")
    return name


# -- storage ----------------------------------------------------------------------------------------


def get_subscription(session: Session, name_or_id: str | int) -> Subscription:
    row = None
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        row = session.get(Subscription, int(name_or_id))
    if row is None:
        row = session.exec(select(Subscription).where(Subscription.name == str(name_or_id))).first()
    if row is None:
        raise SubscriptionError(f"no subscription named {name_or_id!r}; `radar subscriptions list` shows them")
    return row


def add_subscription(engine: Engine, name: str, recipients: Sequence[str], *, markets: Sequence[str] = (),
                     categories: Sequence[str] = (), min_severity: str = "medium", language: str = "en") -> Subscription:
    """Store a new subscription after checking every value; the name must be new."""
    name = clean_name(name)
    recipients = clean_recipients(recipients)
    if not recipients:
        raise SubscriptionError(f"subscription {name!r} needs at least one recipient (--recipient team@example.org)")
    row = Subscription(name=name, recipients=recipients, markets=clean_markets(markets),
                       categories=clean_categories(categories), min_severity=clean_severity(min_severity),
                       language=clean_language(language))
    with Session(engine, expire_on_commit=False) as session:
        if session.exec(select(Subscription).where(Subscription.name == name)).first() is not None:
            raise SubscriptionError(f"a subscription named {name!r} exists; change it with `radar subscriptions update`")
        session.add(row)
        session.commit()
        session.refresh(row)
    log.info("subscription %r added (%d recipients)", name, len(recipients))
    return row


def list_subscriptions(engine: Engine, *, active_only: bool = False) -> list[Subscription]:
    with Session(engine, expire_on_commit=False) as session:
        query = select(Subscription).order_by(Subscription.name)
        if active_only:
            query = query.where(Subscription.active == True)  # noqa: E712 - SQL expression
        return list(session.exec(query))


def update_subscription(engine: Engine, name_or_id: str | int, *, name: str | None = None,
                        recipients: Sequence[str] | None = None, add_recipients: Sequence[str] = (),
                        remove_recipients: Sequence[str] = (), markets: Sequence[str] | None = None,
                        categories: Sequence[str] | None = None, min_severity: str | None = None,
                        language: str | None = None, active: bool | None = None) -> Subscription:
    """Change the given fields; None leaves a field as it is, an empty list clears markets or categories."""
    with Session(engine, expire_on_commit=False) as session:
        row = get_subscription(session, name_or_id)
        if name is not None:
            new_name = clean_name(name)
            clash = session.exec(select(Subscription).where(Subscription.name == new_name, Subscription.id != row.id)).first()
            if clash is not None:
                raise SubscriptionError(f"a subscription named {new_name!r} exists already")
            row.name = new_name
        current = list(row.recipients) if recipients is None else clean_recipients(recipients)
        current = clean_recipients([*current, *add_recipients])
        dropping = {r.strip().lower() for r in remove_recipients}
        unknown = dropping - {r.lower() for r in current}
        if unknown:
            raise SubscriptionError(f"{', '.join(sorted(unknown))} not among the recipients of {row.name!r}")
        current = [r for r in current if r.lower() not in dropping]
        if not current:
            raise SubscriptionError(f"subscription {row.name!r} would have no recipients left; remove it instead")
        row.recipients = current
        if markets is not None:
            row.markets = clean_markets(markets)
        if categories is not None:
            row.categories = clean_categories(categories)
        if min_severity is not None:
            row.min_severity = clean_severity(min_severity)
        if language is not None:
            row.language = clean_language(language)
        if active is not None:
            row.active = active
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def remove_subscription(engine: Engine, name_or_id: str | int, *, purge: bool = False) -> str:
    """Delete a subscription; one with a delivery history is deactivated instead unless ``purge``.

    Returns "removed" or "deactivated". The history is what proves a digest went out, so it is kept
    unless the caller asks for it to go too.
    """
    with Session(engine) as session:
        row = get_subscription(session, name_or_id)
        history = session.exec(select(func.count()).select_from(DigestDelivery)
                               .where(DigestDelivery.subscription_id == row.id)).one()
        if history and not purge:
            row.active = False
            session.add(row)
            session.commit()
            return "deactivated"
        session.exec(delete(DigestDelivery).where(DigestDelivery.subscription_id == row.id))
        session.delete(row)
        session.commit()
        return "removed"
