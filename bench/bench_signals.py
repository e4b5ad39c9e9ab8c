"""Benchmark of the radar stages: incident linking (pairs vs MinHash LSH) and weekly signals on SQLite.

    .venv/bin/python bench/bench_signals.py [--notices 20000] [--link-only]

Generates synthetic notices: products re-reported by several sources (some by GTIN, some by brand +
model, some only by a reworded name) among many one-off notices, spread over 27 weeks with a planted
spike. Prints notices per second for linking and the time of one week's signals, and checks that the
planted incidents and the spike were found.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("magnetic building set tiles balls charger usb wall plug kettle heater fan hair dryer toaster lamp "
         "string lights candle crib cot stroller helmet bicycle scooter battery power bank knife drone laser pointer "
         "slime doll teddy bear puzzle blocks necklace bracelet cream lotion supplement capsules e-cigarette vape").split()
BRANDS = [f"Brand{i}" for i in range(400)]
SOURCES = ["eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls", "fr_rappelconso_recalls", "au_accc_recalls",
           "ca_hc_recalls"]
CATEGORIES = ["cat.toys.magnetic", "cat.electrical.chargers", "cat.childcare.sleep", "cat.cosmetics", "cat.toys",
              "cat.batteries.lithium", "cat.lighting.chains", "cat.weapons.knives"]
HAZARDS = ["hazard.ingestion", "hazard.fire", "hazard.electric_shock", "hazard.chemical", "hazard.choking"]
JURIS = ["juris.eu.de", "juris.eu.fr", "juris.uk", "juris.eu", "juris.us"]
START = date(2026, 5, 18)  # a Monday; 27 weeks end with 2026-W47


def _vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    """Pseudo-words standing in for the long tail of product-name words (materials, features, names)."""
    syllables = "ka lo mi ne ru sa te vo zi pa be do fu gi ha ja".split()
    return sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(size)})


def make_records(n: int, seed: int = 1):
    """(records, expected groups, classes per notice id): every fifth product is re-reported by 2-5 sources.

    A name is two everyday product words, two long-tail words and a model code, like real recall titles.
    """
    from radar.incidents import NoticeRecord

    rng = random.Random(seed)
    tail = _vocabulary(rng)
    records, groups = [], []
    classes: dict[int, list[tuple[str, str]]] = {}
    nid = 0
    while nid < n:
        name_words = rng.sample(WORDS, 2) + rng.sample(tail, 2) + [f"model{rng.randrange(10**6)}"]
        product_classes = [("category", rng.choice(CATEGORIES)), ("hazard", rng.choice(HAZARDS)), ("jurisdiction", rng.choice(JURIS))]
        brand = rng.choice(BRANDS)
        day = START + timedelta(days=rng.randrange(189))
        copies = rng.choice([2, 3, 5]) if rng.random() < 0.2 else 1
        how = rng.choice(["gtin", "brand_model", "text"])
        gtin = f"{rng.randrange(10**12, 10**13)}"
        model = f"X{rng.randrange(10**5)}"
        ids = []
        for c, source in enumerate(rng.sample(SOURCES, copies)):
            nid += 1
            words = name_words[:]
            if c:
                rng.shuffle(words)  # another regulator words it differently
            records.append(NoticeRecord(
                nid, source, title=f"Recall: {' '.join(words)}", product_name=None,
                brand=brand if how != "text" else None, model=model if how == "brand_model" else None,
                gtin=gtin if how == "gtin" else None, day=day + timedelta(days=c),
            ))
            ids.append(nid)
            classes[nid] = product_classes
        if copies > 1:
            groups.append(tuple(ids))
    return records[:n], groups, classes


def bench_linking(n: int) -> None:
    from radar.incidents import find_groups

    records, expected, _ = make_records(n)
    expected = {g for g in expected if max(g) <= n}
    for label, lsh_min in (("all pairs", 10**9), ("MinHash LSH", 1)):
        if label == "all pairs" and n > 10_000:
            print(f"linking {n:>8,} notices, {label:<12}: skipped (n² = {n * n:,} pairs)")
            continue
        t0 = time.perf_counter()
        groups = find_groups(records, lsh_min=lsh_min)
        seconds = time.perf_counter() - t0
        # Memory in a second run: tracemalloc slows Python down too much to time the same run.
        tracemalloc.start()
        find_groups(records, lsh_min=lsh_min)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        found = {tuple(g.notice_ids) for g in groups}
        recall = len(expected & found) / max(1, len(expected))
        print(f"linking {n:>8,} notices, {label:<12}: {seconds:7.2f} s, {n / seconds:>9,.0f} notices/s, "
              f"{len(groups):,} incidents, planted incidents found exactly: {recall:.1%}, "
              f"spurious: {len(found - expected):,}, peak {peak / 2**20:.0f} MiB")


def bench_signals(n: int) -> None:
    from sqlmodel import Session

    from crawlers.items import NoticeItem
    from radar import settings
    from radar.db import get_engine
    from radar.incidents import link_incidents
    from radar.models import Classification
    from radar.signals import compute_signals
    from radar.store import store_items

    records, _, classes_of = make_records(n)
    # The planted spike: three times the cell's expected weekly count (at least 12), all new in 2026-W47.
    per_week = n / 27 / (len(CATEGORIES) * len(HAZARDS) * len(JURIS))
    spike_size = max(12, round(3 * per_week))
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["RADAR_DATA_DIR"] = tmp
        os.environ.pop("RADAR_DATABASE_URL", None)
        settings.get_settings.cache_clear()
        engine = get_engine()
        t0 = time.perf_counter()
        spike_day = date(2026, 11, 17)
        items, classes = [], []
        for r in records:
            items.append(NoticeItem(source=r.source, source_id=str(r.id), url=f"https://example.org/{r.id}", title=r.title,
                                    brand=r.brand, model=r.model, gtin=r.gtin, published=r.day))
            classes.append(classes_of[r.id])
        for i in range(spike_size):  # the planted spike: 12 new magnet incidents in Germany in 2026-W47
            items.append(NoticeItem(source="eu_safety_gate_alerts", source_id=f"spike{i}", url=f"https://example.org/s{i}",
                                    title=f"Magnet set {i} spike", published=spike_day))
            classes.append([("category", "cat.toys.magnetic"), ("hazard", "hazard.ingestion"), ("jurisdiction", "juris.eu.de")])
        with Session(engine) as session:
            for start in range(0, len(items), 2000):
                ids = store_items(session, items[start:start + 2000]).notice_ids
                for nid, cls in zip(ids, classes[start:start + 2000]):
                    for axis, value in cls:
                        session.add(Classification(notice_id=nid, notice_version=1, axis=axis, value=value, method="text",
                                                   pipeline_version="bench"))
            session.commit()
        print(f"stored {len(items):,} notices with {3 * len(items):,} findings in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        linked = link_incidents(engine)
        print(f"link_incidents on SQLite: {time.perf_counter() - t0:.2f} s, {linked.incidents:,} incidents")
        t0 = time.perf_counter()
        result = compute_signals(engine, "2026-W47")
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        compute_signals(engine, "2026-W47")
        again = time.perf_counter() - t0
        plain = compute_signals(engine, "2026-W47", correction="none")
        spikes = [(s.category, s.hazard, s.jurisdiction, s.count) for s in result.spikes]
        planted = any(c == "cat.toys.magnetic" and h == "hazard.ingestion" and j == "juris.eu.de" for c, h, j, _ in spikes)
        print(f"compute_signals 2026-W47: {seconds:.2f} s ({again:.2f} s re-run), {result.cells_tested} cells tested, "
              f"{len(result.spikes)} spikes with the FDR correction ({len(plain.spikes)} without it), "
              f"planted spike of {spike_size} found: {planted}")
        for s in result.spikes[:5]:
            print(f"    {s.reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=20_000)
    parser.add_argument("--link-only", action="store_true")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    import datasketch  # noqa: F401  (imported once here, so its import time is not counted as linking)
    import rapidfuzz  # noqa: F401

    for n in sorted({min(args.notices, 5_000), args.notices}):
        bench_linking(n)
    if not args.link_only:
        bench_signals(args.notices)


if __name__ == "__main__":
    main()
