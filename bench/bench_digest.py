"""Benchmark: build (and optionally send) every digest of one week from a large synthetic archive.

Generates N notices (default 1,000,000) spread over ten years with their classifications, plus the
week's signals, deadlines, proposals with impact estimates, incidents, source runs and subscriptions,
all with bulk inserts; then times reading the week, building each subscription's digest, rendering
it (Jinja2 + css-inline + charts) and composing the MIME messages. Prints the figures.

Run: .venv/bin/python bench/bench_digest.py [--notices 1000000] [--subscriptions 20]
     [--database-url URL] [--send]
A --database-url that already holds the generated archive is reused (generation is skipped).
--send also delivers them through a local aiosmtpd server, with the exactly-once bookkeeping.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WEEK = "2026-W47"
FIRST_DAY = date(2016, 11, 21)
LAST_DAY = date(2026, 11, 22)  # the Sunday ending WEEK
SOURCES = ["eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls", "fr_rappelconso_recalls", "sk_soi_products"]
MARKETS = ["juris.eu.de", "juris.eu.fr", "juris.eu.it", "juris.eu.es", "juris.eu.pl", "juris.eu.nl", "juris.eu.be",
           "juris.eu.at", "juris.eu.cz", "juris.eu.se", "juris.eu.sk", "juris.eu.hu", "juris.uk", "juris.us", "juris.eu",
           "juris.cn", "juris.ca", "juris.au"]
CATEGORIES = ["cat.toys", "cat.toys.magnetic", "cat.toys.slime", "cat.electrical", "cat.electrical.chargers",
              "cat.electrical.lighting", "cat.cosmetics", "cat.childcare", "cat.childcare.cots", "cat.vehicles",
              "cat.clothing", "cat.clothing.children", "cat.jewellery", "cat.chemicals", "cat.food_contact",
              "cat.sports", "cat.furniture", "cat.ppe", "cat.batteries", "cat.e_cigarettes"]
HAZARDS = ["hazard.choking", "hazard.chemical", "hazard.electric_shock", "hazard.fire", "hazard.injuries",
           "hazard.strangulation", "hazard.burns", "hazard.suffocation", "hazard.noise", "hazard.cuts"]
WORDS = ("charger overheats fire electric shock toy magnets choking child small parts swallow battery lithium "
         "cosmetic formaldehyde lead cadmium phthalates recall withdrawn sold online imported model batch barcode "
         "injuries strangulation cord hood drawstring nicotine liquid laser pointer helmet bicycle brake").split()
SUB_MARKETS = [["DE"], ["FR"], ["DE", "FR", "IT"], ["UK"], ["US"], ["EU"], ["PL", "CZ", "SK"], ["ES"], [], ["NL", "BE"]]
SUB_CATEGORIES = [["cat.toys"], ["cat.electrical"], [], ["cat.cosmetics", "cat.chemicals"], ["cat.childcare"],
                  ["cat.toys", "cat.childcare"], ["cat.e_cigarettes"], []]


def utc(day: date, seconds: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(seconds=seconds)


def generate(engine, n: int, n_subs: int, seed: int = 7) -> float:
    from sqlmodel import Session

    from radar.models import (
        Classification, ImpactEstimate, Incident, IncidentMember, Notice, Proposal, Signal, SourceRun,
        Subscription,
    )

    rng = random.Random(seed)
    started = time.perf_counter()
    span = (LAST_DAY - FIRST_DAY).days + 1
    notice_table, class_table = Notice.__table__, Classification.__table__
    week_ids: list[int] = []
    monday = date.fromisocalendar(2026, 47, 1)
    batch = 20_000
    with engine.begin() as connection:
        for start in range(0, n, batch):
            notices, findings = [], []
            for i in range(start + 1, min(n, start + batch) + 1):
                day = FIRST_DAY + timedelta(days=rng.randrange(span))
                seen = utc(day, rng.randrange(86_400))
                if day >= monday:
                    week_ids.append(i)
                serious = rng.random() < 0.4
                notices.append({
                    "id": i, "source": rng.choice(SOURCES), "source_id": f"B{i:08d}", "version": 1,
                    "url": f"https://example.org/bench/{i}", "title": " ".join(rng.choices(WORDS, k=6)).capitalize(),
                    "text": " ".join(rng.choices(WORDS, k=rng.randint(15, 40))) + ".",
                    "published": day - timedelta(days=rng.randint(0, 10)), "language": "en",
                    "category_labels": [], "risk_labels": [], "country_labels": [],
                    "labels": {"risk_level": "Serious risk"} if serious else {},
                    "content_hash": f"{i:064x}", "first_seen": seen, "last_seen": seen, "classified_version": 1,
                })
                for market in {rng.choice(MARKETS) for _ in range(rng.randint(1, 2))}:
                    findings.append((i, "jurisdiction", market, "sold_in"))
                if rng.random() < 0.3:
                    findings.append((i, "jurisdiction", "juris.cn", "origin"))
                findings.append((i, "category", rng.choice(CATEGORIES), None))
                for hazard in {rng.choice(HAZARDS) for _ in range(rng.randint(0, 2))}:
                    findings.append((i, "hazard", hazard, None))
            connection.execute(notice_table.insert(), notices)
            connection.execute(class_table.insert(), [
                {"notice_id": nid, "notice_version": 1, "axis": axis, "value": value, "score": 1.0, "method": "text",
                 "field": "text", "evidence": "", "role": role, "pipeline_version": "bench"}
                for nid, axis, value, role in findings])
            done = min(n, start + batch)
            print(f"\r  generated {done:,} / {n:,} notices", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with Session(engine) as session:
        for k in range(0, min(len(week_ids), 400), 2):  # incidents: pairs of this week's notices
            incident = Incident(key=f"bench:{k}", title=f"Incident {k}", method="brand_model", confidence=0.9)
            session.add(incident)
            session.flush()
            session.add_all([IncidentMember(incident_id=incident.id, notice_id=week_ids[k], method="brand_model"),
                             IncidentMember(incident_id=incident.id, notice_id=week_ids[k + 1], method="brand_model")])
        for k in range(60):
            kind = ("spike", "legislation", "incident")[k % 3]
            session.add(Signal(key=f"bench:{kind}:{k}", kind=kind, week=WEEK, category=rng.choice(CATEGORIES),
                               hazard=rng.choice(HAZARDS), jurisdiction=rng.choice(MARKETS), count=rng.randint(3, 40),
                               baseline=2.0, score=rng.uniform(1, 10), reason=f"{kind} number {k}: more than usual",
                               notice_ids=rng.sample(week_ids, k=min(8, len(week_ids)))))
        for k in range(30):
            session.add(Signal(key=f"bench:deadline:{k}", kind="deadline", week=WEEK, category=rng.choice(CATEGORIES),
                               jurisdiction=rng.choice(MARKETS), due=monday + timedelta(days=rng.randint(7, 200)),
                               reason=f"Deadline {k}"))
        proposals = []
        for k in range(40):
            proposal = Proposal(key=f"bench:{k}", kind="new_rule", rule_id=f"bench.rule.{k}", title=f"Proposal {k}",
                                rationale="Because of the signals.", base_hash="0" * 64,
                                rule={"markets": [rng.choice(["DE", "FR", "UK", "US", "EU"])],
                                      "categories": [rng.choice(CATEGORIES)]})
            session.add(proposal)
            proposals.append(proposal)
        session.flush()
        for proposal in proposals:
            for _ in range(3):
                session.add(ImpactEstimate(proposal_id=proposal.id, catalogue="catalogue.parquet",
                                           listings_scanned=2_000_000, hits=rng.randint(10, 50_000), exact=False,
                                           hits_low=1.0, hits_high=60_000.0))
        for name in SOURCES:
            for d in range(0, 60, 1):
                session.add(SourceRun(source=name, started_at=utc(LAST_DAY - timedelta(days=d)), records=30,
                                      status="failed" if (d == 0 and name == SOURCES[1]) else "ok"))
        for k in range(n_subs):
            session.add(Subscription(name=f"Team {k}", recipients=[f"team{k}.{r}@example.org" for r in range(3)],
                                     markets=SUB_MARKETS[k % len(SUB_MARKETS)],
                                     categories=SUB_CATEGORIES[k % len(SUB_CATEGORIES)],
                                     min_severity=("medium", "high", "serious")[k % 3]))
        session.commit()
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('notice', 'id'), {n})")
    return time.perf_counter() - started


def bench(engine, send: bool) -> None:
    from sqlmodel import Session, select

    from radar.digest import build_digest, compose_message, load_archive, render_digest, send_week
    from radar.models import Subscription
    from radar.subscriptions import SubscriptionView

    with Session(engine) as session:
        subs = [SubscriptionView.of(s) for s in session.exec(select(Subscription).where(Subscription.active == True))]  # noqa: E712
    t0 = time.perf_counter()
    archive = load_archive(engine, WEEK)
    t1 = time.perf_counter()
    built = [build_digest(engine, WEEK, sub, archive=archive) for sub in subs]
    t2 = time.perf_counter()
    rendered = [render_digest(data) for data in built]
    t3 = time.perf_counter()
    messages = [compose_message(r, sender="radar@example.org", to=rcpt).as_bytes()
                for r, sub in zip(rendered, subs) for rcpt in sub.recipients]
    t4 = time.perf_counter()
    print(f"week {WEEK}: {len(archive.facts):,} notices in the 12-week window, {len(archive.notices):,} new this week")
    print(f"  read the week (load_archive)      {t1 - t0:8.2f} s")
    print(f"  build {len(subs)} digests               {t2 - t1:8.2f} s  ({1000 * (t2 - t1) / max(1, len(subs)):.0f} ms each, charts included)")
    print(f"  render HTML+text (css-inline)     {t3 - t2:8.2f} s  ({1000 * (t3 - t2) / max(1, len(subs)):.0f} ms each)")
    print(f"  compose {len(messages)} MIME messages       {t4 - t3:8.2f} s  (avg {sum(map(len, messages)) / max(1, len(messages)) / 1024:.0f} KiB)")
    print(f"  total: all digests of the week    {t4 - t0:8.2f} s")
    if send:
        from aiosmtpd.controller import Controller

        class Sink:
            count = 0

            async def handle_DATA(self, server, session, envelope):
                Sink.count += 1
                return "250 OK"

        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        controller = Controller(Sink(), hostname="127.0.0.1", port=port)
        controller.start()
        os.environ.update(RADAR_SMTP_HOST="127.0.0.1", RADAR_SMTP_PORT=str(port), RADAR_SMTP_STARTTLS="false",
                          RADAR_SMTP_USERNAME="")
        from radar import settings

        settings.get_settings.cache_clear()
        try:
            t5 = time.perf_counter()
            report = send_week(engine, WEEK)
            t6 = time.perf_counter()
            again = send_week(engine, WEEK)
            t7 = time.perf_counter()
        finally:
            controller.stop()
        print(f"  send_week over SMTP (loopback)    {t6 - t5:8.2f} s  ({len(report.sent)} sent, server got {Sink.count})")
        print(f"  send_week again (nothing to send) {t7 - t6:8.2f} s  ({again.already_sent} already sent)")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notices", type=int, default=1_000_000, help="notices in the archive (default 1,000,000)")
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary folder")
    parser.add_argument("--send", action="store_true", help="also send through a local SMTP server")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="radar-bench-digest-"))
    os.environ.setdefault("RADAR_DATA_DIR", str(workdir))
    os.environ["RADAR_PUBLIC_BASE_URL"] = "https://radar.example.org"
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    os.environ["RADAR_DATABASE_URL"] = url
    from sqlalchemy import func, select

    from radar import settings
    from radar.db import get_engine
    from radar.models import Notice

    settings.get_settings.cache_clear()
    engine = get_engine(url)
    with engine.connect() as connection:
        existing = connection.execute(select(func.count()).select_from(Notice)).scalar_one()
    print(f"database: {engine.url.render_as_string(hide_password=True)} ({engine.dialect.name})")
    if existing >= args.notices:
        print(f"reusing the {existing:,} notices already there")
    elif existing:
        raise SystemExit(f"{url} holds {existing:,} notices but {args.notices:,} were asked for; use an empty database")
    else:
        seconds = generate(engine, args.notices, args.subscriptions)
        print(f"generated {args.notices:,} notices with classifications in {seconds:.1f} s "
              f"({args.notices / seconds:,.0f} notices/s, bulk inserts)")
    bench(engine, args.send)


if __name__ == "__main__":
    main()
