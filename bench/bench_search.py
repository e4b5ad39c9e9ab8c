"""Benchmark: the web search (results page + facet counts) over 1,000,000 synthetic notices, SQLite and PostgreSQL.

Generates notices with realistic wording (products, hazards, countries, regulator phrasing) and their
Classification rows (market, category, hazard, policy class), bulk-loads them (executemany on SQLite,
COPY on PostgreSQL, indexes and the FTS index built once at the end), then runs a set of queries with
facets the way the search page does: one page of results plus the facet counts, no cache. Prints the
latency p50 and p95 per database, for the search alone, the facets alone and both together.

    .venv/bin/python bench/bench_search.py                       # 1,000,000 notices, both databases
    .venv/bin/python bench/bench_search.py --notices 100000 --databases sqlite
    .venv/bin/python bench/bench_search.py --reuse                # keep an archive loaded by an earlier run

Aim: p95 under 100 ms for search + facets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "out"
PG_ADMIN = os.environ.get("RADAR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# -- synthetic archive ----------------------------------------------------------------------------

# product phrase, category id
PRODUCTS = [
    ("USB charger", "cat.electrical.chargers"), ("wireless charger", "cat.electrical.chargers"),
    ("power bank", "cat.electrical.chargers"), ("laptop power adapter", "cat.electrical.chargers"),
    ("magnetic building set", "cat.toys.magnetic"), ("magnetic balls", "cat.toys.magnetic"),
    ("plush toy", "cat.toys"), ("doll", "cat.toys"), ("toy car", "cat.toys"), ("slime", "cat.toys"),
    ("baby walker", "cat.childcare"), ("stroller", "cat.childcare"), ("baby sling", "cat.childcare"),
    ("pacifier clip", "cat.childcare"), ("high chair", "cat.childcare"), ("cot bumper", "cat.childcare"),
    ("hair dryer", "cat.electrical"), ("electric kettle", "cat.electrical"), ("fan heater", "cat.electrical"),
    ("LED lamp", "cat.electrical"), ("extension cord", "cat.electrical"), ("air fryer", "cat.electrical"),
    ("e-bike battery", "cat.batteries.lithium"), ("button battery", "cat.batteries.button"),
    ("bicycle helmet", "cat.sports"), ("trampoline", "cat.sports"), ("kick scooter", "cat.sports"),
    ("hoodie with drawstring", "cat.clothing"), ("children's jacket", "cat.clothing"),
    ("necklace", "cat.jewellery"), ("earrings", "cat.jewellery"), ("bracelet", "cat.jewellery"),
    ("skin whitening cream", "cat.cosmetics"), ("tattoo ink", "cat.cosmetics"), ("nail polish", "cat.cosmetics"),
    ("smoke detector", "cat.home"), ("candle", "cat.home"), ("window blind", "cat.home"),
    ("laser pointer", "cat.electrical"), ("e-cigarette liquid", "cat.tobacco"),
]
# hazard wording, hazard id
HAZARDS = [
    ("can overheat and catch fire", "hazard.fire"), ("may cause an electric shock", "hazard.electric_shock"),
    ("small parts can detach and a child may swallow them", "hazard.choking"),
    ("magnets can detach and be swallowed", "hazard.ingestion"), ("contains lead above the legal limit", "hazard.chemical"),
    ("contains phthalates (DEHP) above the limit", "hazard.chemical"), ("contains cadmium", "hazard.chemical"),
    ("the cord can strangle a child", "hazard.strangulation"), ("may cause burns", "hazard.burns"),
    ("sharp edges can cause cuts", "hazard.injuries"), ("the frame can collapse and cause injuries", "hazard.injuries"),
    ("does not detect smoke reliably", "hazard.fire"), ("the laser power exceeds the limit and can damage the eyes", "hazard.injuries"),
    ("contains nicotine above the permitted concentration", "hazard.chemical"),
    ("microbiological contamination was found", "hazard.microbiological"), ("a child can become trapped", "hazard.entrapment"),
]
# country name, jurisdiction id
COUNTRIES = [
    ("Germany", "juris.eu.de"), ("France", "juris.eu.fr"), ("Poland", "juris.eu.pl"), ("Italy", "juris.eu.it"),
    ("Spain", "juris.eu.es"), ("the Netherlands", "juris.eu.nl"), ("Sweden", "juris.eu.se"), ("Austria", "juris.eu.at"),
    ("Belgium", "juris.eu.be"), ("Czechia", "juris.eu.cz"), ("Hungary", "juris.eu.hu"), ("Ireland", "juris.eu.ie"),
    ("the United Kingdom", "juris.uk"), ("the United States", "juris.us"), ("Canada", "juris.ca"), ("Australia", "juris.au"),
]
ORIGINS = [("China", "juris.cn"), ("Türkiye", "juris.tr"), ("India", "juris.in"), ("Vietnam", "juris.vn")]
POLICIES = ["policy.prohibited", "policy.restricted", "policy.listing_quality", "policy.not_supported", "policy.trade_controlled"]
SOURCES = ["eu_safety_gate_alerts", "us_cpsc_recalls", "uk_opss_alerts", "fr_dgccrf_rappelconso", "ca_hc_recalls",
           "au_accc_recalls", "us_fda_enforcement", "uk_opss_news"]
BRANDS = ["Acme", "Brightline", "Kidora", "Voltix", "Homely", "Nordlux", "Petra", "Zenko", "Lumo", "Rivo", "Tecca", "Mimo"]
MEASURES = ["Withdrawal of the product from the market", "Recall of the product from end users",
            "Sales ban", "Import rejected at the border", "Removal of the listing from online marketplaces",
            "Warning consumers about the risks"]
FILLER = ("the product does not comply with the requirements of the relevant European standard and the "
          "authorities ordered measures against the economic operator after laboratory tests of samples bought "
          "online from several sellers consumers should stop using it immediately and return it to the shop for "
          "a full refund the manufacturer has been informed and the distributor cooperated with the market "
          "surveillance authority during the investigation").split()


def notices(n: int, seed: int = 7):
    """(id, fields…) rows and their classification rows, in chunks, the same for every database."""
    rng = random.Random(seed)
    start = date(2015, 1, 1)
    span = (date(2026, 11, 1) - start).days
    now = datetime(2026, 11, 25, tzinfo=timezone.utc)
    chunk_n, chunk_c = [], []
    # Zipf-like popularity: a few products and hazards make most of the notices, as in real archives.
    product_weights = [1 / (i + 1) ** 0.8 for i in range(len(PRODUCTS))]
    hazard_weights = [1 / (i + 1) ** 0.7 for i in range(len(HAZARDS))]
    for notice_id in range(1, n + 1):
        product, category = rng.choices(PRODUCTS, product_weights)[0]
        hazard_text, hazard = rng.choices(HAZARDS, hazard_weights)[0]
        country, market = rng.choice(COUNTRIES)
        origin, origin_id = rng.choice(ORIGINS)
        brand = rng.choice(BRANDS)
        model = f"{brand[:2].upper()}-{rng.randint(100, 9999)}"
        source = rng.choice(SOURCES)
        title = f"{brand} {product} {model}"
        sentences = [
            f"The {product} of the brand {brand}, model {model}, {hazard_text}.",
            f"Notified by {country}; made in {origin}.",
            f"{rng.choice(MEASURES)}.",
            " ".join(rng.choices(FILLER, k=rng.randint(12, 40))).capitalize() + ".",
        ]
        text = " ".join(sentences)
        published = start + timedelta(days=rng.randint(0, span))
        gtin = f"{rng.randint(10**12, 10**13 - 1)}" if rng.random() < 0.3 else None
        chunk_n.append((notice_id, source, f"SYN-{notice_id:07d}", f"https://example.org/{source}/{notice_id}", title, text,
                        published, "en", gtin, now))
        chunk_c.append((notice_id, "jurisdiction", market, "notified_by"))
        chunk_c.append((notice_id, "jurisdiction", origin_id, "origin"))
        if rng.random() < 0.3:
            chunk_c.append((notice_id, "jurisdiction", rng.choice(COUNTRIES)[1], "sold_in"))
        chunk_c.append((notice_id, "category", category, None))
        chunk_c.append((notice_id, "hazard", hazard, None))
        if rng.random() < 0.25:
            chunk_c.append((notice_id, "hazard", rng.choice(HAZARDS)[1], None))
        if rng.random() < 0.4:
            chunk_c.append((notice_id, "policy", rng.choice(POLICIES), None))
        if len(chunk_n) >= 20_000:
            yield chunk_n, chunk_c
            chunk_n, chunk_c = [], []
    if chunk_n:
        yield chunk_n, chunk_c


# -- loading --------------------------------------------------------------------------------------

NOTICE_COLUMNS = ("id, source, source_id, version, url, title, text, published, language, gtin, category_labels, "
                  "risk_labels, country_labels, labels, content_hash, first_seen, last_seen, classified_version, facet_keys")
CLASS_COLUMNS = "notice_id, notice_version, axis, value, score, method, field, evidence, role, pipeline_version"


def _notice_rows(chunk_n, chunk_c):
    """Notice rows with their facet keys, made from their classification rows as classify makes them."""
    from radar.search import facet_keys

    findings: dict[int, list] = {}
    for notice_id, axis, value, role in chunk_c:
        findings.setdefault(notice_id, []).append((axis, value, role))
    for notice_id, source, source_id, url, title, text, published, language, gtin, now in chunk_n:
        yield (notice_id, source, source_id, 1, url, title, text, published, language, gtin, "[]", "[]", "[]", "{}",
               f"{notice_id:064x}", now, now, 1, facet_keys(findings.get(notice_id, ())))


def _class_row(r):
    notice_id, axis, value, role = r
    return (notice_id, 1, axis, value, 1.0, "text", "text", "", role, "bench")


def _sqlite_value(value):
    # The text forms SQLAlchemy itself writes to SQLite, so the ORM reads these rows back.
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def load_sqlite(engine, n: int) -> float:
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        # Indexes and the FTS trigger are dropped during the load and rebuilt once: far faster than per row.
        saved = cur.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND tbl_name IN ('notice', 'classification') "
                            "AND type IN ('index', 'trigger')").fetchall()
        for kind, name, _ in saved:
            cur.execute(f"DROP {kind.upper()} {name}")
        loaded = 0
        for chunk_n, chunk_c in notices(n):
            cur.executemany(f"INSERT INTO notice ({NOTICE_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                            [tuple(_sqlite_value(v) for v in row) for row in _notice_rows(chunk_n, chunk_c)])
            cur.executemany(f"INSERT INTO classification ({CLASS_COLUMNS}) VALUES ({', '.join('?' * 10)})",
                            [_class_row(r) for r in chunk_c])
            loaded += len(chunk_n)
            _progress("sqlite", loaded, n, started)
        raw.commit()
        print("\n  sqlite: building indexes and the FTS index…", file=sys.stderr)
        cur.execute("INSERT INTO notice_fts(notice_fts) VALUES ('rebuild')")
        for _, _, sql in saved:
            cur.execute(sql)
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def load_postgres(engine, n: int) -> float:
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('notice', 'classification') "
                    "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE 'uq_%'")
        saved = cur.fetchall()
        for name, _ in saved:
            cur.execute(f'DROP INDEX "{name}"')
        raw.commit()
        loaded = 0
        for chunk_n, chunk_c in notices(n):
            with cur.copy(f"COPY notice ({NOTICE_COLUMNS}) FROM STDIN") as copy:
                for row in _notice_rows(chunk_n, chunk_c):
                    copy.write_row(row)
            with cur.copy(f"COPY classification ({CLASS_COLUMNS}) FROM STDIN") as copy:
                for r in chunk_c:
                    copy.write_row(_class_row(r))
            raw.commit()
            loaded += len(chunk_n)
            _progress("postgres", loaded, n, started)
        print("\n  postgres: building indexes…", file=sys.stderr)
        cur.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in saved:
            cur.execute(definition)
        cur.execute("SELECT setval(pg_get_serial_sequence('notice', 'id'), (SELECT max(id) FROM notice))")
        raw.commit()
        raw.driver_connection.autocommit = True
        cur.execute("VACUUM ANALYZE notice")
        cur.execute("VACUUM ANALYZE classification")
    finally:
        raw.close()
    return time.perf_counter() - started


def _progress(name: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    print(f"\r  {name}: {done:,}/{total:,} notices loaded ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)


def count_notices(engine) -> int:
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM notice")).scalar_one()


# -- queries --------------------------------------------------------------------------------------


@dataclass
class Query:
    label: str
    q: str = ""
    markets: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    hazards: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    since: date | None = None
    has_gtin: bool | None = None
    sort: str = "date"


QUERIES = [
    Query("landing page: everything", ""),
    Query("one word", "charger"),
    Query("rare word", "trampoline"),
    Query("two words", "magnetic swallowed"),
    Query("phrase", '"electric shock"'),
    Query("OR", "necklace OR bracelet"),
    Query("exclusion", "battery -button"),
    Query("word + market", "charger", markets=("juris.eu.de",)),
    Query("word + category + since", "fire", categories=("cat.electrical",), since=date(2024, 1, 1)),
    Query("word + hazard", "toy", hazards=("hazard.choking",)),
    Query("market only", "", markets=("juris.eu.fr",)),
    Query("category + market", "", categories=("cat.toys",), markets=("juris.eu",)),
    Query("policy class", "", policies=("policy.prohibited",)),
    Query("has GTIN + word", "lead", has_gtin=True),
    Query("relevance sort", "phthalates doll", sort="relevance"),
    Query("brand + model-ish", "Kidora stroller"),
    Query("hostile text", "charger'; DROP TABLE notice; --"),
    Query("no match", "zeppelin"),
    Query("since only", "", since=date(2026, 1, 1)),
    Query("word + market + sort relevance", "recall", markets=("juris.us",), sort="relevance"),
]


def run_queries(engine, repeat: int, sample_above: int, time_limit: float,
                estimate_above: int | None) -> list[tuple[Query, list[float], list[float], int, int]]:
    from radar.search import Filters
    from radar.search import search as run_search
    from radar.web.facets import facet_counts

    out = []
    for query in QUERIES:
        filters = Filters(jurisdictions=list(query.markets), categories=list(query.categories), hazards=list(query.hazards),
                          policies=list(query.policies), since=query.since, has_gtin=query.has_gtin)
        run_search(engine, query.q, filters, sort=query.sort, limit=20, estimate_above=estimate_above)  # warm the page cache once
        searches, facets = [], []
        total, timeouts = "", 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = run_search(engine, query.q, filters, sort=query.sort, limit=20, estimate_above=estimate_above)
            t1 = time.perf_counter()
            counted = facet_counts(engine, query.q, filters, total=result.total, sample_above=sample_above, time_limit=time_limit,
                                   match_ids=result.match_ids)
            t2 = time.perf_counter()
            timeouts += counted.timed_out
            searches.append((t1 - t0) * 1000)
            facets.append((t2 - t1) * 1000)
            total = f"~{result.total:,}" if result.approximate else f"{result.total:,}"
        out.append((query, searches, facets, total, timeouts))
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def report(name: str, rows, loaded: int, load_seconds: float | None) -> dict:
    print(f"\n== {name}: {loaded:,} notices" + (f" (loaded in {load_seconds:,.0f} s)" if load_seconds else " (reused)"))
    print(f"  {'query':<34} {'matches':>9} {'search ms':>10} {'facets ms':>10} {'total ms':>9}")
    search_all, facet_all, total_all = [], [], []
    abandoned = sum(row[4] for row in rows)
    for query, searches, facets, total, timeouts in rows:
        both = [s + f for s, f in zip(searches, facets)]
        search_all += searches
        facet_all += facets
        total_all += both
        print(f"  {query.label:<34} {total:>9} {statistics.median(searches):>10.1f} {statistics.median(facets):>10.1f} "
              f"{statistics.median(both):>9.1f}" + (f"  facets abandoned {timeouts}×" if timeouts else ""))
    summary = {
        "search": (pct(search_all, .5), pct(search_all, .95)),
        "facets": (pct(facet_all, .5), pct(facet_all, .95)),
        "search+facets": (pct(total_all, .5), pct(total_all, .95)),
    }
    if abandoned:
        print(f"  facet counts abandoned at the time limit: {abandoned} of {len(total_all)} runs")
    for key, (p50, p95) in summary.items():
        flag = "" if key != "search+facets" else ("  (aim: p95 < 100 ms: met)" if p95 < 100 else "  (aim: p95 < 100 ms: NOT met)")
        print(f"  {key:<14} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms{flag}")
    return {"database": name, "notices": loaded, "load_seconds": load_seconds, "facets_abandoned": abandoned,
            **{k: {"p50_ms": round(v[0], 1), "p95_ms": round(v[1], 1)} for k, v in summary.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=1_000_000, help="How many synthetic notices to load (default 1,000,000).")
    parser.add_argument("--databases", default="sqlite,postgres", help="Comma-separated: sqlite, postgres.")
    parser.add_argument("--sqlite-path", type=Path, default=None, help="SQLite file (default bench/out/search-N.db).")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN, help="A PostgreSQL URL whose server may create the bench database.")
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs of each query (after one warm-up).")
    parser.add_argument("--estimate-above", type=int, default=None,
                        help="Totals above this are estimated (default: the web_count_estimate_above setting; 0: exact).")
    parser.add_argument("--sample-above", type=int, default=None, help="Facet sampling threshold (default: the web_facet_sample_above setting).")
    parser.add_argument("--facet-time-limit-ms", type=int, default=None, help="Facet time limit (default: the web_facet_time_limit_ms setting; 0: none).")
    parser.add_argument("--reuse", action="store_true", help="Reuse an archive of the same size left by an earlier run.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this JSON file.")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    from radar.db import get_engine
    from radar.settings import get_settings

    sample_above = args.sample_above if args.sample_above is not None else int(get_settings().web_facet_sample_above)
    estimate_above = (args.estimate_above if args.estimate_above is not None else int(get_settings().web_count_estimate_above)) or None
    limit_ms = args.facet_time_limit_ms if args.facet_time_limit_ms is not None else int(get_settings().web_facet_time_limit_ms)
    time_limit = limit_ms / 1000
    wanted = [d.strip() for d in args.databases.split(",") if d.strip()]
    results = []
    OUT.mkdir(parents=True, exist_ok=True)
    abandon = f"abandoned after {limit_ms:,} ms" if limit_ms else "never abandoned"
    estimated = f"totals estimated above {estimate_above:,}" if estimate_above else "totals exact"
    print(f"{len(QUERIES)} queries × {args.repeat} runs; {estimated}; facets sampled above {sample_above:,} matches, {abandon}")
    if "sqlite" in wanted:
        path = args.sqlite_path or OUT / f"search-{args.notices}.db"
        if not (args.reuse and path.exists()):
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        engine = get_engine(f"sqlite:///{path}")
        seconds = None
        if count_notices(engine) != args.notices:
            seconds = load_sqlite(engine, args.notices)
        results.append(report("SQLite (FTS5)", run_queries(engine, args.repeat, sample_above, time_limit, estimate_above), count_notices(engine), seconds))
    if "postgres" in wanted:
        name = f"radar_bench_{args.notices}"
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists and not args.reuse:
                connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                exists = None
            if not exists:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        engine = get_engine(args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}")
        seconds = None
        if count_notices(engine) != args.notices:
            if count_notices(engine):
                print(f"database {name} holds a different archive; drop it or run without --reuse", file=sys.stderr)
                return 1
            seconds = load_postgres(engine, args.notices)
        results.append(report("PostgreSQL (tsvector + GIN)", run_queries(engine, args.repeat, sample_above, time_limit, estimate_above), count_notices(engine), seconds))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
