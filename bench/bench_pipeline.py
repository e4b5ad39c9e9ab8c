"""Benchmark: crawl + store + classify on the bundled sample, and store + classify on synthetic notices.

Prints notices per second for each stage and the peak memory (max RSS) of this process and of the
crawl child. Run: .venv/bin/python bench/bench_pipeline.py [--synthetic 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("charger overheats fire electric shock toy magnets choking child small parts swallow battery lithium "
         "cosmetic formaldehyde lead cadmium phthalates recall withdrawn sold online Germany France Poland Spain "
         "Italy Netherlands China imported model batch barcode injuries strangulation cord hood drawstring "
         "e-cigarette nicotine liquid laser pointer eye damage knife blade helmet bicycle brake").split()
SAFETY_GATE_CATEGORIES = ["Toys", "Electrical appliances and equipment", "Cosmetics", "Childcare articles and children's equipment",
                          "Motor vehicles", "Clothing, textiles and fashion items", "Jewellery", "Chemical products"]
RISKS = ["Choking", "Chemical", "Electric shock", "Fire", "Injuries", "Strangulation", "Burns"]
COUNTRIES = ["Germany", "France", "Poland", "Spain", "Italy", "Netherlands", "Czechia", "Hungary"]


def mb(kib: int) -> float:
    return kib / 1024


def synthetic_items(n: int, seed: int = 1):
    from crawlers.items import NoticeItem

    rng = random.Random(seed)
    start = date(2020, 1, 1)
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(30, 90))
        title = " ".join(rng.choices(WORDS, k=6)).capitalize()
        yield NoticeItem(
            source="eu_safety_gate_alerts", source_id=f"SYN/{i:07d}", url=f"https://example.org/syn/{i}",
            title=title, text=" ".join(words) + ".", published=start + timedelta(days=rng.randint(0, 2000)),
            category_labels=[rng.choice(SAFETY_GATE_CATEGORIES)], risk_labels=rng.sample(RISKS, k=rng.randint(1, 2)),
            country_labels=[rng.choice(COUNTRIES)], labels={"notifying_country": rng.choice(COUNTRIES)},
            raw_body=f"<notification id='{i}'>{title}</notification>".encode(), raw_content_type="application/xml",
        )


def bench_sample(workdir: Path) -> None:
    from crawlers.runner import crawl_subprocess
    from radar import settings
    from radar.classify import classify_pending
    from radar.db import get_engine
    from radar.sampleserver import SampleServer
    from radar.summary import summarise

    url = os.environ["RADAR_DATABASE_URL"]
    settings.get_settings.cache_clear()
    engine = get_engine(url)
    with SampleServer() as server:
        t0 = time.perf_counter()
        result = crawl_subprocess(mirror=server.url)
        crawl_s = time.perf_counter() - t0
    if result.returncode != 0:
        print(result.stderr[-2000:])
        raise SystemExit("sample crawl failed")
    stored = summarise(engine).notices
    t0 = time.perf_counter()
    classified = classify_pending(engine)
    classify_s = time.perf_counter() - t0
    child_rss = mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"bundled sample: {stored} notices, {server.bytes_sent} bytes served")
    print(f"  crawl + store (child process, incl. Python/Scrapy start-up): {crawl_s:.2f} s, {stored / crawl_s:.1f} notices/s, crawl peak RSS {child_rss:.0f} MB")
    print(f"  classify: {classified.notices} notices in {classify_s:.2f} s, {classified.notices / max(classify_s, 1e-9):.0f} notices/s")


def bench_synthetic(n: int) -> None:
    from radar.classify import classify_pending
    from radar.db import get_engine, session_scope
    from radar.store import store_items

    engine = get_engine(os.environ["RADAR_DATABASE_URL"])
    items = synthetic_items(n)
    t0 = time.perf_counter()
    batch = []
    stored = 0
    for item in items:
        batch.append(item)
        if len(batch) == 1000:
            with session_scope(engine) as session:
                stored += store_items(session, batch).new
            batch = []
    if batch:
        with session_scope(engine) as session:
            stored += store_items(session, batch).new
    store_s = time.perf_counter() - t0
    print(f"synthetic: {n} notices")
    print(f"  store: {store_s:.1f} s, {stored / store_s:.0f} notices/s ({stored} new)")
    t0 = time.perf_counter()
    classified = classify_pending(engine, batch_size=1000)
    classify_s = time.perf_counter() - t0
    print(f"  classify: {classify_s:.1f} s, {classified.notices / classify_s:.0f} notices/s, {classified.findings} findings")
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        again = store_items(session, list(synthetic_items(min(n, 10_000))))
    print(f"  re-store of {again.unchanged} unchanged notices: {time.perf_counter() - t0:.1f} s, {again.new} new (must be 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--synthetic", type=int, default=100_000, help="synthetic notices to store and classify")
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RADAR_DATA_DIR"] = tmp
        os.environ["RADAR_DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/bench-sample.db"
        print(f"database: {os.environ['RADAR_DATABASE_URL'].split('@')[-1]}")
        bench_sample(Path(tmp))
        if args.synthetic:
            from radar import db, settings

            db.dispose_engines()
            if not args.database_url:
                os.environ["RADAR_DATABASE_URL"] = f"sqlite:///{tmp}/bench-synthetic.db"
            settings.get_settings.cache_clear()
            bench_synthetic(args.synthetic)
    print(f"peak RSS of this process: {mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss):.0f} MB")


if __name__ == "__main__":
    main()
