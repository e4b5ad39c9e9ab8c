"""Catalogue readers and listing-impact estimates: exact counts, sampled intervals, real listings."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import sqlite3
from pathlib import Path

import pytest

from radar.catalogue import Catalogue, Listing, open_catalogue
from radar.democatalogue import generate_demo_catalogue
from radar.errors import RadarError
from radar.impact import _allocate, _stratified, estimate_impact, top_category
from radar.rules import Rule, load_rules

FLIPKART = Path(__file__).parents[1].parent / "shared/data/real/flipkart_listings/flipkart_titles_category_tree.dev.csv"

ROWS = [
    {"id": "1", "title": "USB charger 20W", "market": "DE", "description": "fast", "category": "cat.electrical.chargers", "brand": "Anker", "seller": "s1"},
    {"id": "2", "title": "Zombie knife", "market": "GB", "description": "", "category": "cat.weapons.knives", "brand": "", "seller": "s2"},
    {"id": "3", "title": "", "market": "FR", "description": "no title", "category": "", "brand": "", "seller": "s1"},
    {"id": "4", "title": "Chargeur électrique", "market": "uk", "description": "", "category": "", "brand": "", "seller": "s3"},
    {"id": "5", "title": "Book", "market": "", "description": "", "category": "", "brand": "", "seller": "s1"},
]


def rule(rule_id: str, include: dict, exclude: dict | None = None, markets=("EU", "GB"), categories=()) -> Rule:
    return Rule.model_validate({
        "id": rule_id, "title": f"test {rule_id}", "policy_class": "policy.restricted", "markets": list(markets),
        "categories": list(categories), "match": {"include": include, "exclude": exclude or {}},
        "action": {"type": "review"}, "effective_date": "2024-01-01",
    })


def write_csv(path: Path, rows: list[dict], encoding: str = "utf-8", delimiter: str = ",") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_all(catalogue: Catalogue) -> list[Listing]:
    return list(catalogue)


# --- catalogue readers -----------------------------------------------------------------------------


def check_rows(listings: list[Listing]) -> None:
    assert [x.id for x in listings] == ["1", "2", "4"]
    assert listings[0] == Listing("1", "USB charger 20W", "DE", "fast", "cat.electrical.chargers", "Anker", "s1")
    assert listings[1].description is None and listings[1].brand is None
    assert listings[2].market == "GB"  # "uk" read as GB
    assert listings[2].title == "Chargeur électrique"


def test_csv(tmp_path):
    catalogue = Catalogue(write_csv(tmp_path / "c.csv", ROWS))
    check_rows(read_all(catalogue))
    assert catalogue.stats.empty_titles == 1 and catalogue.stats.missing_market == 1 and catalogue.stats.rows_read == 5


def test_csv_semicolon_and_gzip(tmp_path):
    plain = write_csv(tmp_path / "c.csv", ROWS, delimiter=";")
    zipped = tmp_path / "c.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    check_rows(read_all(Catalogue(zipped)))


def test_jsonl(tmp_path):
    path = tmp_path / "c.jsonl"
    lines = [json.dumps(r | {"id": int(r["id"])}, ensure_ascii=False) for r in ROWS]
    lines.insert(2, "{not json")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalogue = Catalogue(path)
    check_rows(read_all(catalogue))
    assert catalogue.stats.bad_records == 1


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    table = pa.table({k: [r[k] for r in ROWS] for k in ROWS[0]} | {"id": [int(r["id"]) for r in ROWS]})
    pq.write_table(table, path)
    catalogue = Catalogue(path, chunk_size=2)
    check_rows(read_all(catalogue))
    assert catalogue.count() == 5


def test_sqlite_table(tmp_path):
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE listings (id INTEGER, Title TEXT, market TEXT, description TEXT, category TEXT, brand TEXT, seller TEXT, price REAL)")
        connection.executemany("INSERT INTO listings VALUES (?,?,?,?,?,?,?,1.0)", [tuple(r.values()) for r in ROWS])
    catalogue = Catalogue(f"sqlite:///{path}", table="listings", chunk_size=2)
    check_rows(read_all(catalogue))
    assert catalogue.count() == 5
    with pytest.raises(RadarError, match="no such table"):
        read_all(Catalogue(f"sqlite:///{path}", table="nope"))
    with pytest.raises(RadarError, match="needs table="):
        Catalogue(f"sqlite:///{path}")


def test_missing_required_columns_name_the_file_and_what_was_found(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [{"uniq_id": "1", "product_name": "x", "price": "2"}])
    with pytest.raises(RadarError) as info:
        read_all(Catalogue(path))
    message = str(info.value)
    assert str(path) in message
    assert "missing required column(s) id, title, market" in message
    assert "found columns: uniq_id, product_name, price" in message
    listings = read_all(Catalogue(path, columns={"id": "uniq_id", "title": "product_name"}, default_market="fr"))
    assert listings == [Listing("1", "x", "FR")]


def test_bad_encoding_falls_back_with_a_warning(tmp_path, caplog):
    path = tmp_path / "legacy.csv"
    good = "id,title,market\n1,Café crème,FR\n".encode("utf-8")
    bad = "2,Kühlschrank Ladegerät,DE\n".encode("cp1252") + "3,Œuvre €5,FR\n".encode("cp1252")
    path.write_bytes(good + bad + b"4,\x81odd,DE\n")
    catalogue = Catalogue(path)
    with caplog.at_level(logging.WARNING, logger="radar.catalogue"):
        listings = read_all(catalogue)
    assert [x.title for x in listings] == ["Café crème", "Kühlschrank Ladegerät", "Œuvre €5", "\x81odd"]
    assert catalogue.stats.fallback_decoded_lines == 3
    assert any(str(path) in r.getMessage() and "cp1252" in r.getMessage() for r in caplog.records)
    # A second pass does not repeat the warning.
    caplog.clear()
    read_all(catalogue)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_utf8_bom_and_utf16(tmp_path):
    text = "id,title,market\n1,Ladegerät,DE\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_all(Catalogue(bom)) == [Listing("1", "Ladegerät", "DE")]
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))
    assert read_all(Catalogue(utf16)) == [Listing("1", "Ladegerät", "DE")]


def test_chunks_stream_in_bounded_pieces(tmp_path):
    rows = [{"id": str(i), "title": f"item {i}", "market": "DE"} for i in range(10)]
    catalogue = Catalogue(write_csv(tmp_path / "c.csv", rows), chunk_size=3)
    sizes = [len(chunk) for chunk in catalogue.chunks()]
    assert sizes == [3, 3, 3, 1]
    chunk = next(catalogue.chunks(fields=()))
    assert chunk.description is None and chunk.category is None


def test_quoted_multiline_fields_across_blocks(tmp_path):
    rows = [{"id": str(i), "title": f"line one\nline two {i}", "market": "DE", "description": "x" * 5000} for i in range(400)]
    listings = read_all(Catalogue(write_csv(tmp_path / "c.csv", rows)))
    assert len(listings) == 400 and listings[-1].title == "line one\nline two 399"


def csv_module_listings(text: str) -> list[Listing]:
    """What the csv module makes of a catalogue with id, title and market: the reference for the fast reader."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    header = [h.strip().lower() for h in rows[0]]
    out = []
    for row in rows[1:]:
        row = row + [""] * (len(header) - len(row))
        fields = {name: row[header.index(name)].strip() for name in ("id", "title", "market")}
        market = {"UK": "GB"}.get(fields["market"].upper(), fields["market"].upper())
        if fields["title"] and market:
            out.append(Listing(fields["id"], fields["title"], market))
    return out


@pytest.mark.parametrize("text", [
    'id,title,market\n1,"two\nlines, and ""quotes""",DE\n2,"crlf\r\ninside",fr\r\n3,  padded  , uk \n',
    "id,title,market\n\n1,after a blank line,DE\n\n\n2,b,FR",
    "id,title,market\n1,extra field,DE,surplus\n2,b,FR\n",
    'id,title,market\n1,mid"quote,DE\n2,"closed"then more,FR\n',
    "\ufeffID,Title,Market\n1,with a BOM,DE\n",
    "id,title,market\n,,\n1,,DE\n2,no market,\n3,ok,IT\n",
])
def test_fast_csv_reader_reads_what_the_csv_module_reads(tmp_path, text):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8", newline="")
    assert read_all(Catalogue(path, chunk_size=1)) == csv_module_listings(text)


def test_fast_csv_reader_hands_over_to_the_csv_module_mid_file(tmp_path, caplog):
    # pyarrow reads blocks of a few MiB; past the first one a short row and a cp1252 line make it stop,
    # and the csv module must go on from the first row not yet read, neither repeating nor losing one.
    rows = [f'{i},"listing {i} {"x" * 60}, ""quoted""\nsecond line",{"DE" if i % 3 else "uk"}' for i in range(70_000)]
    rows.insert(30_000, "")
    rows[60_000] = "short,a row without a market"
    rows[65_000] = "cp1252,Caf\udce9 cr\udce8me,FR"
    path = tmp_path / "big.csv"
    path.write_bytes(("id,title,market\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogateescape"))
    assert path.stat().st_size > 5 << 20
    catalogue = Catalogue(path, chunk_size=7_000)
    with caplog.at_level(logging.WARNING, logger="radar.catalogue"):
        sizes = [len(chunk) for chunk in catalogue.chunks()]
    listings = read_all(catalogue)
    assert sum(sizes) == len(listings) == 69_999 and sizes[:8] == [7_000] * 8
    assert listings == csv_module_listings(path.read_bytes().decode("cp1252"))
    assert catalogue.stats.missing_market == 1 and catalogue.stats.fallback_decoded_lines == 1
    assert {x.id: x.title for x in listings}["cp1252"] == "Caf\xe9 cr\xe8me"


def test_parquet_repeated_columns_are_cleaned_like_text_ones(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [
        {"id": "1", "title": "a", "market": " uk ", "category": " cat.toys ", "brand": None, "seller": "s1"},
        {"id": "2", "title": "b", "market": "DE", "category": None, "brand": "", "seller": "  "},
        {"id": "3", "title": "c", "market": None, "category": "cat.toys", "brand": None, "seller": "s1"},
        {"id": "4", "title": "d", "market": "fr", "category": "", "brand": None, "seller": None},
    ]
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({k: [r[k] for r in rows] for k in rows[0]}), path)
    assert read_all(Catalogue(path, chunk_size=3)) == [
        Listing("1", "a", "GB", None, "cat.toys", None, "s1"),
        Listing("2", "b", "DE", None, None, None, None),
        Listing("4", "d", "FR", None, None, None, None),
    ]
    chunk = next(Catalogue(path).chunks())
    assert chunk.brand is None  # empty in every row: as if absent


def test_records_with_gaps_and_repeated_values_are_cleaned_value_by_value():
    categories = [None, " cat.toys ", "", "cat.toys", 7, None, "  "] * 20
    records = [{"id": i, "title": f"t{i}", "market": " de", "category": c} for i, c in enumerate(categories)]
    listings = read_all(Catalogue.from_records(records, chunk_size=64))
    expected = [None, "cat.toys", None, "cat.toys", "7", None, None] * 20
    assert [x.category for x in listings] == expected and {x.market for x in listings} == {"DE"}


def test_impact_workers_setting(monkeypatch):
    import os

    from radar.impact import impact_workers
    from radar.settings import get_settings

    assert impact_workers() == 1
    monkeypatch.setenv("RADAR_IMPACT_WORKERS", "0")
    get_settings.cache_clear()
    assert impact_workers() == (os.cpu_count() or 1)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(RadarError, match="cannot tell the catalogue format"):
        Catalogue(tmp_path / "c.xlsx")
    with pytest.raises(RadarError, match="not found"):
        read_all(Catalogue(tmp_path / "absent.csv"))


# --- exact impact ----------------------------------------------------------------------------------

CATALOGUE = [
    Listing("1", "USB charger 20W", "DE", None, "cat.electrical.chargers", None, "s1"),
    Listing("2", "Charger case", "DE", None, None, None, "s1"),
    Listing("3", "Wall charger, fast", "GB", None, None, None, "s2"),
    Listing("4", "Supercharger sticker", "FR", None, None, None, "s2"),
    Listing("5", "Ladegerät 65W", "FR", "Netzteil mit Kabel", "cat.electrical.chargers", None, "s3"),
    Listing("6", "USB charger for toys", "FR", None, "cat.toys", None, "s3"),
    Listing("7", "Phone charger", "US", None, None, None, "s4"),
    Listing("8", "Notebook", "DE", "works with any charger", None, None, "s1"),
    Listing("9", "wall charger plug", "GB", None, None, None, "s1"),
]
PROPOSED = rule("rule.t.chargers", {"en": ["charger"], "de": ["ladegerät"]}, {"en": ["charger case"]},
                categories=["cat.electrical.chargers"])
CURRENT = [rule("rule.t.wall_chargers", {"en": ["wall charger"]}, markets=["GB"])]


def test_exact_impact_on_a_small_catalogue():
    estimate = estimate_impact([PROPOSED], CURRENT, CATALOGUE)
    # Hits: 1 (DE), 3 (GB, also current), 5 (FR, German phrase), 8 (description), 9 (GB, also current).
    # Not: 2 (exclude), 4 (supercharger), 6 (category out of scope), 7 (US is not a rule market).
    assert estimate.exact and estimate.method == "exact: all 9 listings matched"
    assert (estimate.listings_total, estimate.listings_scanned) == (9, 9)
    assert (estimate.hits, estimate.already_hit, estimate.newly_hit) == (5, 2, 3)
    assert estimate.hits_ci == (5, 5) and estimate.newly_hit_ci == (3, 3)
    assert {k: (v.hits, v.newly_hit) for k, v in estimate.by_market.items()} == {"DE": (2, 2), "GB": (2, 0), "FR": (1, 1)}
    assert {k: (v.hits, v.newly_hit) for k, v in estimate.by_category.items()} == {"(none)": (3, 1), "cat.electrical.chargers": (2, 2)}
    assert estimate.by_rule["rule.t.chargers"].hits == 5
    assert estimate.top_sellers == [("s1", 3), ("s2", 1), ("s3", 1)]
    assert len(estimate.examples) == 5
    assert [e.newly_hit for e in estimate.examples] == [True, True, True, False, False]
    by_id = {e.listing_id: e for e in estimate.examples}
    assert by_id["1"].highlighted == "USB «charger» 20W"
    assert by_id["5"].highlighted == "«Ladegerät» 65W" and by_id["5"].terms == ("ladegerät",)
    assert by_id["8"].highlighted == "Notebook" and by_id["8"].spans[0].field == "description"
    assert estimate.to_dict()["by_market"]["DE"] == {"hits": 2, "newly_hit": 2}


def test_title_only_matching_and_example_cap():
    estimate = estimate_impact(PROPOSED, CURRENT, CATALOGUE, examples=2, fields=("title",))
    assert estimate.hits == 4  # listing 8 only mentions a charger in its description
    assert len(estimate.examples) == 2 and all(e.newly_hit for e in estimate.examples)


def test_a_proposed_edit_is_compared_with_the_current_version_of_the_same_rule():
    current = rule("rule.t.chargers", {"en": ["usb charger"]})
    estimate = estimate_impact([PROPOSED], [current], CATALOGUE)
    # Listings 1 is already hit by the current version; listing 6 is, but the proposal narrowed the category.
    assert (estimate.hits, estimate.already_hit, estimate.newly_hit) == (5, 1, 4)


# --- sampled impact -------------------------------------------------------------------------------


def synthetic(n: int, seed: int = 1) -> list[Listing]:
    import random

    rng = random.Random(seed)
    words = ["cable", "case", "phone", "lamp", "shirt", "book", "toy", "mug"]
    out = []
    for i in range(n):
        market = rng.choice(["DE", "FR", "GB", "IT"])
        category = rng.choice(["cat.electrical.chargers", "cat.toys.magnetic", "cat.clothing", None])
        rate = 0.3 if category == "cat.electrical.chargers" else 0.02
        title = " ".join(rng.choice(words) for _ in range(3))
        if rng.random() < rate:
            title += " charger" if rng.random() < 0.7 else " usb charger"
        out.append(Listing(str(i), title, market, None, category, None, f"s{rng.randrange(30)}"))
    return out


def test_stratified_sample_interval_contains_the_true_value():
    listings = synthetic(20_000)
    current = [rule("rule.t.usb", {"en": ["usb charger"]})]
    proposed = rule("rule.t.any", {"en": ["charger"]})
    truth = estimate_impact([proposed], current, listings)
    sample = estimate_impact([proposed], current, listings, budget=1_000, seed=5)
    assert truth.exact and not sample.exact
    assert sample.listings_total == 20_000 and sample.listings_scanned == 1_000
    assert sample.method.startswith("stratified sample of 1,000 of 20,000 listings (16 strata")
    assert "Wilson" in sample.method and "95% CI" in sample.method
    assert sample.hits_ci[0] <= truth.hits <= sample.hits_ci[1]
    assert sample.newly_hit_ci[0] <= truth.newly_hit <= sample.newly_hit_ci[1]
    assert sample.hits_ci[0] < sample.hits < sample.hits_ci[1]
    assert abs(sample.hits - truth.hits) < 0.2 * truth.hits
    assert sum(t.hits for t in sample.by_market.values()) == pytest.approx(sample.hits, rel=0.01)
    assert len(sample.examples) == 20
    again = estimate_impact([proposed], current, listings, budget=1_000, seed=5)
    assert again.hits == sample.hits and again.hits_ci == sample.hits_ci
    assert [e.listing_id for e in again.examples] == [e.listing_id for e in sample.examples]


def test_interval_coverage_over_many_seeds():
    listings = synthetic(6_000, seed=2)
    proposed = rule("rule.t.any", {"en": ["charger"]})
    truth = estimate_impact([proposed], [], listings).hits
    covered = sum(
        low <= truth <= high
        for seed in range(60)
        for low, high in [estimate_impact([proposed], [], listings, budget=400, seed=seed, examples=0).hits_ci]
    )
    assert covered >= 52  # nominal 95 %: 57 of 60; allow for sampling noise in the check itself


def test_rare_rule_gets_a_non_degenerate_interval():
    listings = synthetic(5_000, seed=3)
    listings[17] = Listing("17", "Magnetic balls 216", "DE", None, "cat.toys.magnetic", None, "s1")
    proposed = rule("rule.t.magnets", {"en": ["magnetic balls"]})
    estimate = estimate_impact([proposed], [], listings, budget=500, seed=0)
    low, high = estimate.hits_ci
    assert low <= 1 <= high and high >= 1 and high < 200


def test_allocation_and_estimator_helpers():
    alloc = _allocate({"a": 900, "b": 90, "c": 10}, 100)
    assert sum(alloc.values()) == 100 and alloc["c"] >= 2 and alloc["a"] > alloc["b"]
    assert _stratified([100, 100], [100, 100], [10, 30]) == (40, (40, 40))  # census: no uncertainty
    assert top_category("cat.toys.magnetic") == "cat.toys"
    assert top_category('["Toys >> Dolls >> Barbie"]') == "Toys"
    assert top_category(None) == "(none)"


def test_budget_and_arguments():
    with pytest.raises(ValueError):
        estimate_impact([], [], CATALOGUE)
    with pytest.raises(ValueError):
        estimate_impact([PROPOSED], [], CATALOGUE, budget=0)


# --- worker processes and catalogue counts --------------------------------------------------------


WORKER_PROPOSED = [rule("rule.t.any", {"en": ["charger"]}), rule("rule.t.usb", {"en": ["usb charger"]}, {"en": ["cable"]})]
WORKER_CURRENT = [rule("rule.t.old", {"en": ["usb charger"]}, markets=["DE"])]


def test_worker_processes_give_the_same_estimate():
    catalogue = Catalogue.from_records(synthetic(6_000, seed=4), chunk_size=250)  # more chunks than workers hold
    for budget in (10_000, 1_500):  # exact, then a stratified sample
        single = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, catalogue, budget=budget, workers=1)
        double = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, catalogue, budget=budget, workers=2)
        assert single.to_dict() == double.to_dict()
        assert single.hits > 100 and single.exact == (budget == 10_000)


def test_worker_processes_on_a_sql_catalogue(db_url):
    from sqlalchemy import create_engine

    listings = synthetic(3_000, seed=6)
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE listings (id TEXT, title TEXT, market TEXT, category TEXT, seller TEXT)")
            connection.exec_driver_sql(
                "INSERT INTO listings VALUES (%s)" % ", ".join(["?" if db_url.startswith("sqlite") else "%s"] * 5),
                [(x.id, x.title, x.market, x.category, x.seller) for x in listings],
            )
    finally:
        engine.dispose()
    catalogue = Catalogue(db_url, table="listings", chunk_size=200)
    for budget in (5_000, 800):
        single = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, catalogue, budget=budget, workers=1).to_dict()
        assert estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, catalogue, budget=budget, workers=2).to_dict() == single
    # Without ORDER BY the rows may come in another order than inserted: examples, ties among sellers and
    # the sample may differ, the exact counts may not.
    in_memory = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, listings).to_dict()
    exact = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, catalogue, workers=2).to_dict()
    for key in ("listings_total", "hits", "newly_hit", "by_market", "by_category", "by_rule"):
        assert exact[key] == in_memory[key], key


class GrownCatalogue(Catalogue):
    """A catalogue whose rows were counted before more were added."""

    def count(self) -> int:
        return 10


def test_a_catalogue_that_grew_after_its_count_is_still_sampled_right(tmp_path, caplog):
    listings = synthetic(4_000, seed=5)
    path = write_csv(tmp_path / "c.csv", [
        {"id": x.id, "title": x.title, "market": x.market, "category": x.category or "", "seller": x.seller} for x in listings
    ])
    uncounted = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, Catalogue(path), budget=1_000)  # CSV: count() is None
    with caplog.at_level(logging.WARNING, logger="radar.impact"):
        grown = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, GrownCatalogue.from_records(listings), budget=1_000)
    assert not grown.exact and grown.to_dict() == uncounted.to_dict()
    assert any("changed while being read" in r.getMessage() for r in caplog.records)
    fits = estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, listings, budget=4_000)  # counted: no strata tally needed
    assert fits.exact and fits.hits == estimate_impact(WORKER_PROPOSED, WORKER_CURRENT, Catalogue(path)).hits


# --- files end to end, demo catalogue, real listings -------------------------------------------------


def test_demo_catalogue_is_deterministic_and_realistic(tmp_path):
    first = generate_demo_catalogue(tmp_path / "a.csv", n=3_000, seed=7)
    second = generate_demo_catalogue(tmp_path / "b.csv", n=3_000, seed=7)
    assert first.read_bytes() == second.read_bytes()
    listings = read_all(open_catalogue(first))
    assert len(listings) == 3_000
    assert {x.market for x in listings} == {"DE", "FR", "GB", "IT", "ES", "NL", "PL"}
    ruleset = load_rules()
    chargers = ruleset.by_id("rule.electrical.chargers_conformity")
    others = [r for r in ruleset.rules if r.id != chargers.id]
    estimate = estimate_impact([chargers], others, first)
    assert estimate.exact and estimate.hits > 50
    assert not any("Supercharger" in e.title for e in estimate.examples)
    sampled = estimate_impact([chargers], others, first, budget=1_000)
    assert sampled.hits_ci[0] <= estimate.hits <= sampled.hits_ci[1]


def test_real_flipkart_listings():
    if not FLIPKART.exists():
        pytest.skip(f"real data {FLIPKART} is absent (it lives in ../shared beside the checkout)")
    # The file has no market column: treat it as one market.
    catalogue = Catalogue(FLIPKART, columns={"id": "uniq_id", "title": "product_name", "category": "product_category_tree"},
                          default_market="GB")
    with FLIPKART.open(encoding="utf-8") as handle:
        titles = [row["product_name"] for row in csv.DictReader(handle)]
    # An independent count: whole words, case-insensitive, with the phrase's single spaces as any non-word run.
    pattern = re.compile(r"(?<![^\W_])(?:watch|watches|wrist\W+watch)(?![^\W_])", re.IGNORECASE)
    expected = sum(1 for title in titles if title.strip() and pattern.search(title))
    watches = rule("rule.t.watches", {"en": ["watch", "watches", "wrist watch"]}, markets=["GB"])
    estimate = estimate_impact([watches], [], catalogue, examples=5)
    assert estimate.exact and estimate.listings_total == sum(1 for t in titles if t.strip())
    assert estimate.hits == expected and expected > 100
    assert all("«" in e.highlighted for e in estimate.examples)
    assert "Watches" in estimate.by_category or any("Watches" in k for k in estimate.by_category)
    sampled = estimate_impact([watches], [], catalogue, budget=3_000, seed=1)
    assert not sampled.exact and sampled.listings_scanned == 3_000
    assert sampled.hits_ci[0] <= expected <= sampled.hits_ci[1]
