"""Catalogue readers and listing-impact estimates: exact counts, sampled intervals, real listings."""

from __future__ import annotations

import csv
import gzip
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
