"""The search a URL describes: GET parameters in, filters out, and links that change one thing at a time.

Every search page is a plain GET URL (q, sort, page, source, market, category, hazard, policy, since,
until, gtin), so it can be bookmarked, shared and saved. A saved search keeps the same parameters as a
dict (``as_saved``); ``from_saved`` turns one back into a search, which is what the digest stage uses
to send new matches of a followed search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import urlencode

from radar.errors import SearchQueryError
from radar.search import Filters

log = logging.getLogger(__name__)

LIST_PARAMS = ("source", "market", "category", "hazard", "policy")
MAX_VALUES = 20  # per list parameter: a URL with hundreds of filters is abuse, not a search
MAX_PAGE = 500
MAX_QUERY_CHARS = 500


@dataclass
class SearchParams:
    q: str = ""
    source: list[str] = field(default_factory=list)
    market: list[str] = field(default_factory=list)  # jurisdiction ids, or market codes such as DE
    category: list[str] = field(default_factory=list)
    hazard: list[str] = field(default_factory=list)
    policy: list[str] = field(default_factory=list)
    since: date | None = None
    until: date | None = None
    gtin: str = ""  # "yes", "no" or "" (either)
    sort: str = "date"
    page: int = 1

    # -- reading ---------------------------------------------------------------------------------

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, str]]) -> "SearchParams":
        """From (name, value) pairs as a query string has them; bad values raise SearchQueryError."""
        values: dict[str, Any] = {name: [] for name in LIST_PARAMS}
        single: dict[str, str] = {}
        for name, value in pairs:
            value = (value or "").strip()
            if name in LIST_PARAMS:
                if value and value not in values[name]:
                    values[name].append(value[:200])
            else:
                single[name] = value
        for name in LIST_PARAMS:
            if len(values[name]) > MAX_VALUES:
                raise SearchQueryError(f"at most {MAX_VALUES} values of {name!r} at once")
        q = single.get("q", "")
        if len(q) > MAX_QUERY_CHARS:
            raise SearchQueryError(f"the query has more than {MAX_QUERY_CHARS} characters; search for fewer words")
        sort = single.get("sort") or "date"
        if sort not in ("date", "relevance"):
            raise SearchQueryError(f"sort must be 'date' or 'relevance', not {sort!r}")
        gtin = single.get("gtin", "")
        if gtin not in ("", "yes", "no"):
            raise SearchQueryError(f"gtin must be 'yes' or 'no', not {gtin!r}")
        try:
            page = int(single.get("page") or 1)
        except ValueError:
            raise SearchQueryError(f"page {single.get('page')!r} is not a number") from None
        if page < 1 or page > MAX_PAGE:
            raise SearchQueryError(f"page must be between 1 and {MAX_PAGE}; narrow the search to see older notices")
        return cls(q=q, since=_day(single.get("since"), "since"), until=_day(single.get("until"), "until"),
                   gtin=gtin, sort=sort, page=page, **values)

    @classmethod
    def from_saved(cls, query: str, params: dict[str, Any]) -> "SearchParams":
        """The search a SavedSearch row describes (its ``query`` and ``params`` columns)."""
        pairs: list[tuple[str, str]] = [("q", query or "")]
        for name, value in (params or {}).items():
            if name in ("q", "page"):
                continue
            for item in value if isinstance(value, list) else [value]:
                pairs.append((name, str(item)))
        return cls.from_pairs(pairs)

    # -- writing ---------------------------------------------------------------------------------

    def pairs(self, *, page: bool = True) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.q:
            out.append(("q", self.q))
        for name in LIST_PARAMS:
            out.extend((name, v) for v in getattr(self, name))
        if self.since:
            out.append(("since", self.since.isoformat()))
        if self.until:
            out.append(("until", self.until.isoformat()))
        if self.gtin:
            out.append(("gtin", self.gtin))
        if self.sort != "date":
            out.append(("sort", self.sort))
        if page and self.page != 1:
            out.append(("page", str(self.page)))
        return out

    def url(self, path: str = "/search", **changes: Any) -> str:
        params = replace(self, **changes) if changes else self
        query = urlencode(params.pairs())
        return f"{path}?{query}" if query else path

    def toggle(self, name: str, value: str, path: str = "/search") -> str:
        """The URL with one list value added, or removed when present; back to page 1."""
        values = list(getattr(self, name))
        if value in values:
            values.remove(value)
        else:
            values.append(value)
        return self.url(path, **{name: values, "page": 1})

    def as_saved(self) -> dict[str, Any]:
        """The filters and sort as a SavedSearch.params dict (the query text goes in SavedSearch.query)."""
        out: dict[str, Any] = {}
        for name, value in self.pairs(page=False):
            if name == "q":
                continue
            if name in LIST_PARAMS:
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        return out

    @property
    def filtered(self) -> bool:
        return bool(any(getattr(self, n) for n in LIST_PARAMS) or self.since or self.until or self.gtin)

    def filters(self, market_lookup=None) -> Filters:
        """The filters for radar.search; market codes (DE, UK) become jurisdiction ids via `market_lookup`."""
        markets = []
        for market in self.market:
            if market.startswith("juris."):
                markets.append(market)
                continue
            found = market_lookup(market) if market_lookup else None
            if not found:
                raise SearchQueryError(f"unknown market {market!r}; use a jurisdiction id such as juris.eu.de or a code such as DE")
            markets.append(found)
        if self.since and self.until and self.since > self.until:
            raise SearchQueryError(f"since {self.since} is after until {self.until}")
        has_gtin = {"yes": True, "no": False}.get(self.gtin)
        return Filters(jurisdictions=markets, categories=list(self.category), hazards=list(self.hazard),
                       sources=list(self.source), since=self.since, until=self.until,
                       policies=list(self.policy), has_gtin=has_gtin)


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise SearchQueryError(f"{name} {value!r} is not a date like 2024-01-31") from None
