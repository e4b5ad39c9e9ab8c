"""The phrase matcher: whole words, excludes, languages, market and category scope, spans, bulk = single."""

from __future__ import annotations

import csv
import pickle
import random
from pathlib import Path

import pytest

from radar.matcher import (
    EU_MEMBER_STATES_FALLBACK,
    Matcher,
    Span,
    eu_member_states,
    expand_markets,
    highlight,
    normalise_text,
)
from radar.rules import Rule, load_rules

FLIPKART = Path(__file__).parents[1].parent / "shared/data/real/flipkart_listings/flipkart_titles_category_tree.dev.csv"


def make_rule(rule_id: str, include: dict, exclude: dict | None = None, markets=("EU", "GB"), categories=()) -> Rule:
    return Rule.model_validate({
        "id": rule_id,
        "title": f"test rule {rule_id}",
        "policy_class": "policy.restricted",
        "markets": list(markets),
        "categories": list(categories),
        "match": {"include": include, "exclude": exclude or {}},
        "action": {"type": "review"},
        "effective_date": "2024-01-01",
    })


CHARGERS = make_rule("rule.t.chargers", {"en": ["charger", "usb c charger"], "de": ["*ladegerät", "netzteil"], "fr": ["chargeur électrique"]},
                     {"en": ["charger case"]}, categories=["cat.electrical.chargers"])
MAGNETS = make_rule("rule.t.magnets", {"en": ["magnetic balls"], "de": ["magnetkugeln"]}, {"en": ["fridge magnet"]},
                    categories=["cat.toys"])
KNIVES_GB = make_rule("rule.t.knives", {"en": ["zombie knife", "knife*"]}, markets=["GB"], categories=["cat.weapons"])
STRASSE = make_rule("rule.t.strasse", {"de": ["straßenschild"]})


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher([CHARGERS, MAGNETS, KNIVES_GB, STRASSE])


def test_normalise_text():
    assert normalise_text("  USB-C   Ladegerät!! 20W ") == "usb c ladegerat 20w"
    assert normalise_text("STRASSE / Straße") == "strasse strasse"
    assert normalise_text("ﬁne Ⅻ ½") == "fine xii 1 2"
    assert normalise_text("Søren Œuvre Łódź") == "soren oeuvre lodz"
    assert normalise_text("e\u0301te\u0301 été") == "ete ete"  # decomposed and composed accents agree
    assert normalise_text("a\tb\nc\u00a0d") == "a b c d"


def test_whole_words_at_both_ends(matcher):
    assert "rule.t.chargers" in matcher.match("USB charger, 20W")
    assert "rule.t.chargers" in matcher.match("charger")
    assert matcher.match("Tesla Supercharger adapter") == {}
    assert matcher.match("Chargers for everyone") == {}
    assert matcher.match("discharger") == {}


def test_star_opens_an_end(matcher):
    spans = matcher.match("Schnellladegerät 65W")["rule.t.chargers"]
    assert spans == [(7, 16, "*ladegerät")]
    assert "rule.t.knives" in matcher.match("Knifes and forks")
    assert "rule.t.knives" in matcher.match("knifepoint")
    assert matcher.match("Pocketknife") == {}  # only the right end is open


def test_punctuation_and_spacing_between_words(matcher):
    for text in ("usb-c charger", "USB C  Charger", "usb/c-charger!", "Usb\u00a0C\tcharger"):
        assert {phrase for _, _, phrase in matcher.match(text)["rule.t.chargers"]} == {"charger", "usb c charger"}, text


def test_excludes_veto_the_rule(matcher):
    assert "rule.t.chargers" not in matcher.match("Charger case for earbuds")
    assert "rule.t.magnets" not in matcher.match("Magnetic balls and a fridge magnet set")
    listing = {"title": "USB charger 20W", "description": "Comes with a charger case", "market": "DE", "category": None}
    assert matcher.match_listing(listing) == []


def test_multi_language_and_accent_folding(matcher):
    assert "rule.t.chargers" in matcher.match("Chargeur électrique rapide")
    assert "rule.t.chargers" in matcher.match("CHARGEUR ELECTRIQUE rapide")  # accents dropped by the seller
    assert "rule.t.chargers" in matcher.match("Netzteil 12V")
    assert "rule.t.magnets" in matcher.match("Neodym Magnetkugeln 5mm")
    assert "rule.t.strasse" in matcher.match("Altes STRASSENSCHILD Berlin")


def test_spans_point_into_the_original_text(matcher):
    text = "Ｎeu:  Schnell-LADEGERÄT  für   Handy"
    spans = matcher.match(text)["rule.t.chargers"]
    (start, end, phrase), = spans
    assert phrase == "*ladegerät"
    assert text[start:end] == "LADEGERÄT"
    assert highlight(text, [(start, end)]) == "Ｎeu:  Schnell-«LADEGERÄT»  für   Handy"
    ligature = "Oﬃce charger"
    (s, e, _), = matcher.match(ligature)["rule.t.chargers"]
    assert ligature[s:e] == "charger"


def test_market_scope_and_eu_expansion(matcher):
    base = {"title": "Zombie knife 12 inch", "category": None}
    assert [h.rule_id for h in matcher.match_listing(base | {"market": "GB"})] == ["rule.t.knives"]
    assert [h.rule_id for h in matcher.match_listing(base | {"market": "uk"})] == ["rule.t.knives"]
    assert matcher.match_listing(base | {"market": "DE"}) == []
    charger = {"title": "USB charger", "category": None}
    for market in ("DE", "FR", "PL", "IE", "GB"):
        assert [h.rule_id for h in matcher.match_listing(charger | {"market": market})] == ["rule.t.chargers"], market
    for market in ("CH", "NO", "US", "", None):
        assert matcher.match_listing(charger | {"market": market}) == [], market


def test_category_scope(matcher):
    title = {"title": "Magnetic balls 216 pcs", "market": "FR"}
    assert matcher.match_listing(title | {"category": "cat.toys.magnetic"})  # child of the rule's category
    assert matcher.match_listing(title | {"category": "cat.toys"})
    assert matcher.match_listing(title | {"category": None})  # unknown category: text decides
    assert matcher.match_listing(title | {"category": "Toys >> Puzzles"})  # not a taxonomy id: text decides
    assert matcher.match_listing(title | {"category": "cat.office"}) == []
    assert matcher.match_listing(title | {"category": "cat.toysx"}) == []  # prefix only at a dot


def test_match_listing_reports_terms_and_spans_per_field(matcher):
    listing = {"title": "Netzteil", "description": "Ein schnelles USB-C Charger", "market": "AT", "category": "cat.electrical.chargers"}
    (hit,) = matcher.match_listing(listing)
    assert hit.rule_id == "rule.t.chargers"
    assert set(hit.terms) == {"netzteil", "charger", "usb c charger"}
    assert hit.spans[0] == Span("title", 0, 8, "netzteil")
    assert {s.field for s in hit.spans} == {"title", "description"}


def test_bulk_scan_rows_and_scope(matcher):
    titles = ["USB charger", "nothing here", "zombie knife", "Charger case", "Magnetkugeln", "zombie knife"]
    markets = ["DE", "DE", "GB", "DE", "FR", "DE"]
    categories = [None, None, None, None, "cat.toys", None]
    result = matcher.scan(titles, markets, categories)
    ids = {row: [matcher.rules[i].id for i in rules] for row, rules in result.items()}
    assert ids == {0: ["rule.t.chargers"], 2: ["rule.t.knives"], 4: ["rule.t.magnets"]}
    assert 5 in matcher.scan(titles)  # without markets no scope applies


def test_a_phrase_never_spans_two_listings_or_title_and_description(matcher):
    assert matcher.scan(["magnetic", "balls"], ["GB", "GB"]) == {}
    assert matcher.scan(["usb c", "charger"]) == {1: (0,)}  # "usb c charger" does not span the two rows
    assert matcher.scan(["magnetic"], descriptions=["balls"]) == {}
    assert matcher.scan(["x"], descriptions=["magnetic balls"]) == {0: (1,)}


def test_separator_characters_inside_titles_do_not_shift_rows(matcher):
    titles = ["a\x00b", "nothing", "USB\x01charger", "zombie knife"]
    result = matcher.scan(titles, ["GB"] * 4)
    assert set(result) == {2, 3}


def test_a_matcher_travels_to_a_worker_process_as_its_rules(matcher):
    clone = pickle.loads(pickle.dumps(matcher))
    titles = ["USB charger", "zombie knife", "Magnetkugeln", "Charger case", "nothing"]
    markets = ["DE", "GB", "FR", "DE", "uk"]
    categories = [None, None, "cat.toys", None, "cat.office"]
    assert [r.id for r in clone.rules] == [r.id for r in matcher.rules]
    assert clone.scan(titles, markets, categories) == matcher.scan(titles, markets, categories)


def test_bulk_and_single_paths_agree_on_random_text():
    words = ["charger", "supercharger", "usb", "c", "Ladegerät", "schnellladegerät", "magnetic", "balls", "fridge",
             "magnet", "zombie", "knife", "knives", "Straße", "straßenschild", "é", "—", "ﬁ", "x", "  ", "-", "Ｃharger"]
    rng = random.Random(3)
    matcher = Matcher([CHARGERS, MAGNETS, KNIVES_GB, STRASSE])
    titles = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    descriptions = [rng.choice([None, "", "charger case", "magnetic balls"]) for _ in titles]
    bulk = matcher.scan(titles, descriptions=descriptions)
    for row, (title, description) in enumerate(zip(titles, descriptions)):
        # Every rule here covers GB, so the single path's scope check changes nothing; excludes apply across fields.
        single = {h.rule_id for h in matcher.match_listing({"title": title, "description": description, "market": "GB"})}
        expected = {matcher.rules[i].id for i in bulk.get(row, ())}
        assert single == expected, (title, description)


def test_eu_member_states_from_the_taxonomy(tmp_path):
    eu_member_states.cache_clear()
    try:
        path = tmp_path / "jurisdictions.yml"
        entries = [{"id": f"juris.eu.{c.lower()}", "iso2": c} for c in sorted(EU_MEMBER_STATES_FALLBACK - {"MT"})]
        entries += [{"id": "juris.gb", "iso2": "GB"}, {"id": "juris.eu.xx", "iso2": "XX"}]
        import yaml

        path.write_text(yaml.safe_dump({"nodes": entries}), encoding="utf-8")
        states = eu_member_states(path)
        assert "XX" in states and "MT" not in states and "GB" not in states
        partial = tmp_path / "partial.yml"
        partial.write_text(yaml.safe_dump({"nodes": entries[:3]}), encoding="utf-8")
        assert eu_member_states(partial) == EU_MEMBER_STATES_FALLBACK
        assert eu_member_states(tmp_path / "absent.yml") == EU_MEMBER_STATES_FALLBACK
        assert expand_markets(["EU"], states) >= states
    finally:
        eu_member_states.cache_clear()


def test_the_real_policy_on_real_listings_bulk_equals_single():
    if not FLIPKART.exists():
        pytest.skip(f"real data {FLIPKART} is absent (it lives in ../shared beside the checkout)")
    with FLIPKART.open(encoding="utf-8") as handle:
        titles = [row["product_name"] for row in csv.DictReader(handle)]
    matcher = Matcher(load_rules())
    bulk = matcher.scan(titles, ["GB"] * len(titles))
    single = {}
    for row, title in enumerate(titles):
        hits = matcher.match_listing_indexed({"title": title, "market": "GB"})
        if hits:
            single[row] = tuple(i for i, _ in hits)
    assert bulk == single
    assert len(bulk) > 20  # the catalogue has watches, chargers, knives… some rule must hit
    for row in list(bulk)[:50]:
        for hit in matcher.match_listing({"title": titles[row], "market": "GB"}):
            for span in hit.spans:
                if "*" not in span.phrase:  # an open end may hit a longer word
                    assert normalise_text(titles[row][span.start : span.end]) == normalise_text(span.phrase)
