"""US Consolidated Screening List: the bulk JSON of 12 export-control and sanctions lists, diffed against the last run.

Each run stores the download itself as one notice (source id ``snapshot``, the raw body kept and versioned like
any notice), and yields one notice per entry added to or removed from the lists since the snapshot stored
before it. The previous snapshot is read back from the database, not from a local file: every crawl worker
shares the database, and each snapshot stays auditable ("what did the list say on that day").
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import Any

import scrapy

from crawlers.base import FAILURE_EMPTY, FAILURE_LAYOUT, RadarSpider, clean_text, parse_date, record_bytes
from crawlers.feeds import follow_redirects, guarded_request, iter_records, stored_notice
from crawlers.items import NoticeItem
from radar.settings import get_settings

log = logging.getLogger(__name__)

SNAPSHOT_ID = "snapshot"
# A download with less than half the entries of the last one is a broken or partial file, not a mass delisting:
# diffing it would report thousands of removals that never happened.
SHRINK_LIMIT = 0.5
_LIST_PAGE = "https://www.trade.gov/consolidated-screening-list"
# Per-person and per-vessel details: kept in the raw body of the entry's notice, not needed in its fields.
_DETAILS = ("title", "nationalities", "citizenships", "dates_of_birth", "places_of_birth", "call_sign", "vessel_type",
            "gross_tonnage", "gross_registered_tonnage", "vessel_flag", "vessel_owner", "standard_order")


class UsTradeCslSpider(RadarSpider):
    name = "us_trade_csl"

    def start_requests_list(self) -> Iterable[scrapy.Request]:
        yield guarded_request(self.source.url, self.parse, errback=self.on_error,
                              meta={"download_maxsize": int(get_settings().csl_max_response_bytes)})

    def previous_entries(self) -> dict[str, dict[str, Any]] | None:
        """The entries of the snapshot the last run stored, by id; None before the first run."""
        notice, body = stored_notice(self.name, SNAPSHOT_ID)
        if notice is None:
            return None
        try:
            records = json.loads(body or b"")["results"]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: the stored snapshot cannot be read (%s); this run is taken as a new baseline",
                        self.name, exc)
            return None
        return {clean_text(r.get("id")): r for r in records if isinstance(r, dict) and r.get("id")}

    @follow_redirects
    def parse(self, response):
        data = self.load_json(response)
        if data is None:
            return
        if not isinstance(data, dict) or "results" not in data:
            self.report_failure(FAILURE_LAYOUT, "no results list in %s", response.url)
            return
        current: dict[str, dict[str, Any]] = {}
        for record in iter_records(data.pop("results"), self, "entries", response.url):
            entry_id = clean_text(record.get("id"))
            if entry_id:
                current[entry_id] = record
        if not current:
            self.report_failure(FAILURE_EMPTY, "no screening list entries in %s", response.url)
            return
        for key in ("total", "sources_used", "search_performed_at", "offset"):
            data.pop(key, None)
        self.leftovers(data, "download")
        previous = self.previous_entries()
        if previous and len(current) < len(previous) * SHRINK_LIMIT:
            self.report_failure(FAILURE_LAYOUT, "%s lists %d entries, the last snapshot %d; not diffed, the last "
                                "snapshot is kept", response.url, len(current), len(previous))
            return
        if previous is None:
            log.info("%s: first snapshot, %d entries, kept as the baseline for the next run", self.name, len(current))
        else:
            added, removed = sorted(current.keys() - previous.keys()), sorted(previous.keys() - current.keys())
            log.info("%s: %d entries added and %d removed since the last snapshot", self.name, len(added), len(removed))
            observed = date.today()
            for entry_id in added:
                yield self.parse_entry(response, dict(current[entry_id]), "added", observed)
            for entry_id in removed:
                yield self.parse_entry(response, dict(previous[entry_id]), "removed", observed)
        # Last, so it is stored after the changes: if storing stops half way, the next run diffs against the
        # old snapshot again instead of losing the changes.
        yield self.snapshot_item(response, current)

    def snapshot_item(self, response, entries: dict[str, dict[str, Any]]) -> NoticeItem:
        lists = Counter(clean_text(e.get("source")) or "(no list named)" for e in entries.values())
        last_listed = max((d for e in entries.values() if (d := parse_date(e.get("start_date")))), default=None)
        modified = parse_date((response.headers.get("Last-Modified") or b"").decode("latin-1"))
        return self.make_item(
            response,
            source_id=SNAPSHOT_ID,
            url=_LIST_PAGE,
            title=f"US Consolidated Screening List: {len(entries)} entries on {len(lists)} lists",
            text="\n".join(f"{name}: {count} {'entry' if count == 1 else 'entries'}"
                           for name, count in sorted(lists.items())),
            # The publisher's Last-Modified, else the newest listing: never the crawl date, which would make
            # every re-crawl of an unchanged list a new version.
            published=modified or last_listed,
            labels={"entries": len(entries), "lists": dict(sorted(lists.items()))},
        )

    def parse_entry(self, response, record: dict[str, Any], action: str, observed: date) -> NoticeItem:
        raw = record_bytes(record)
        entry_id = clean_text(record.pop("id", ""))
        name = clean_text(record.pop("name", "")) or f"entry {entry_id}"
        list_name = clean_text(record.pop("source", ""))
        addresses = [_address(a) for a in record.pop("addresses", None) or [] if isinstance(a, dict)]
        ids = [_identity(i) for i in record.pop("ids", None) or [] if isinstance(i, dict)]
        countries = [a["country"] for a in addresses if a["country"]]
        countries += [clean_text(c) for key in ("nationalities", "citizenships") for c in record.get(key) or []]
        listed, delisted = parse_date(record.pop("start_date", None)), parse_date(record.pop("end_date", None))
        labels = {
            "action": action,
            "list": list_name,
            "entry_id": entry_id,
            "entity_number": clean_text(record.pop("entity_number", "")),
            "entity_type": clean_text(record.pop("type", "")),
            "programs": [clean_text(p) for p in record.pop("programs", None) or [] if p],
            "alt_names": [clean_text(n) for n in _as_list(record.pop("alt_names", None)) if n],
            "addresses": [a["text"] for a in addresses if a["text"]],
            "ids": [i for i in ids if i],
            "federal_register_notice": clean_text(record.pop("federal_register_notice", "")),
            "license_requirement": clean_text(record.pop("license_requirement", "")),
            "license_policy": clean_text(record.pop("license_policy", "")),
            "remarks": clean_text(record.pop("remarks", "")),
        }
        url = clean_text(record.pop("source_information_url", "")) or _LIST_PAGE
        record.pop("source_list_url", None)
        for key in _DETAILS:
            record.pop(key, None)
        self.leftovers(record, "entry")
        verb = "Added to" if action == "added" else "Removed from"
        text = [f"{verb} the {list_name or 'screening list'}: {name.rstrip('.')}."]
        text += [f"Also known as: {'; '.join(labels['alt_names'])}."] if labels["alt_names"] else []
        text += [f"Address: {a}." for a in labels["addresses"]]
        text += [f"{key.replace('_', ' ').capitalize()}: {labels[key]}" for key in
                 ("license_requirement", "license_policy", "remarks", "federal_register_notice") if labels[key]]
        return self.make_item(
            response,
            # The day the change was seen is part of the id: an entry removed and listed again is a new event.
            source_id=f"{action}/{entry_id}/{observed.isoformat()}",
            url=url,
            title=f"{verb} the {list_name or 'screening list'}: {name}",
            text="\n".join(text),
            published=(listed if action == "added" else delisted) or observed,
            effective_date=listed if action == "added" else delisted,
            country_labels=list(dict.fromkeys(c for c in countries if c)),
            labels={k: v for k, v in labels.items() if v not in ("", [], None)},
            raw_body=raw,
            raw_content_type="application/json",
        )


def _as_list(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else str(value).split("; ")


def _address(address: dict[str, Any]) -> dict[str, str]:
    parts = [clean_text(address.get(k)) for k in ("address", "city", "state", "postal_code", "country")]
    return {"text": ", ".join(p for p in parts if p), "country": parts[-1]}


def _identity(ident: dict[str, Any]) -> str:
    kind, number = clean_text(ident.get("type")), clean_text(ident.get("number"))
    country = clean_text(ident.get("country"))
    return " ".join(p for p in (f"{kind}:" if kind else "", number, f"({country})" if country else "") if p)
