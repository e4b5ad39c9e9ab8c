"""Search: one interface, the same results on SQLite FTS5 and PostgreSQL, safe against any query text."""

from __future__ import annotations

from datetime import date

import pytest

from crawlers.items import NoticeItem
from radar.db import session_scope
from radar.errors import SearchQueryError
from radar.models import Classification
from radar.search import MARK_END, MARK_START, Filters, fts5_expression, parse_query, search, tsquery_expression
from radar.store import store_items

NOTICES = [
    ("n1", "USB charger overheats", "The charger can overheat and catch fire while charging phones.", date(2024, 5, 2),
     [("jurisdiction", "juris.eu.de", "notified_by"), ("jurisdiction", "juris.cn", "origin"), ("category", "cat.electrical.chargers", None), ("hazard", "hazard.fire", None)]),
    ("n2", "Wireless chargers recalled", "Chargers sold online; risk of electric shock.", date(2023, 11, 20),
     [("jurisdiction", "juris.eu.fr", "notified_by"), ("category", "cat.electrical.chargers", None), ("hazard", "hazard.electric_shock", None)]),
    ("n3", "Magnetic building set", "Small magnets detach; a child may swallow them. Sold in Germany.", date(2024, 1, 15),
     [("jurisdiction", "juris.eu.de", "sold_in"), ("category", "cat.toys.magnetic", None), ("hazard", "hazard.choking", None)]),
    ("n4", "Doll with phthalates", "The doll contains DEHP (0.5 % by weight). <script>alert(1)</script> is not code here.", None,
     [("jurisdiction", "juris.eu.pl", "notified_by"), ("category", "cat.toys", None), ("hazard", "hazard.chemical", None)]),
    ("n5", "Charger cable from Germany", "Made in Germany; no charger fault found.", date(2022, 6, 1),
     [("jurisdiction", "juris.eu.de", "origin"), ("category", "cat.electrical", None), ("hazard", "hazard.electric_shock", "inferred")]),
]


@pytest.fixture
def archive(engine):
    with session_scope(engine) as session:
        result = store_items(session, [
            NoticeItem(source="eu_safety_gate_alerts" if i % 2 else "us_cpsc_recalls", source_id=sid,
                       url=f"https://example.org/{sid}", title=title, text=text, published=day, raw_body=sid.encode())
            for i, (sid, title, text, day, _) in enumerate(NOTICES)
        ])
        for notice_id, (_, _, _, _, findings) in zip(result.notice_ids, NOTICES):
            for axis, value, role in findings:
                session.add(Classification(notice_id=notice_id, notice_version=1, axis=axis, value=value, method="text",
                                           role=role, pipeline_version="test"))
    return engine


def ids(result):
    return [h.source_id for h in result.hits]


def test_words_match_as_prefixes_newest_first(archive):
    result = search(archive, "charger")
    assert ids(result) == ["n1", "n2", "n5"]
    assert result.total == 3
    assert MARK_START + "charger" + MARK_END in result.hits[0].snippet


def test_market_category_and_since_filters(archive):
    assert ids(search(archive, "charger", Filters(jurisdictions=["juris.eu.de"]))) == ["n1"]  # n5 is only made in DE
    assert ids(search(archive, "", Filters(jurisdictions=["juris.eu"]))) == ["n1", "n3", "n2", "n4"]
    assert ids(search(archive, "", Filters(categories=["cat.toys"]))) == ["n3", "n4"]
    assert ids(search(archive, "charger", Filters(since=date(2024, 1, 1)))) == ["n1"]
    assert ids(search(archive, "", Filters(hazards=["hazard.choking"]))) == ["n3"]
    assert ids(search(archive, "", Filters(sources=["us_cpsc_recalls"]))) == ["n1", "n3", "n5"]
    # A hazard inferred from the category is not one the notice names: n5 is not an electric-shock notice.
    assert ids(search(archive, "", Filters(hazards=["hazard.electric_shock"]))) == ["n2"]
    assert all("hazard.electric_shock" not in h.hazards for h in search(archive, "cable").hits)


def test_phrases_exclusions_and_relevance(archive):
    assert ids(search(archive, '"electric shock"')) == ["n2"]
    assert ids(search(archive, "charger -cable")) == ["n1", "n2"]
    assert ids(search(archive, "-charger")) == ["n3", "n4"]
    assert ids(search(archive, "charger", sort="relevance"))[0] in ("n1", "n2", "n5")


@pytest.mark.parametrize("query", [
    'charger" OR 1=1 --', "charger'; DROP TABLE notice; --", "NEAR(charger fire)", "charger*", "title:charger",
    '"unterminated phrase', "^charger", "(charger", "charger AND", "{col}:x", "\\x00", "-", '""', "*", "ÄÖÜ ß",
])
def test_hostile_queries_are_plain_words(archive, query):
    result = search(archive, query)  # must not raise a database syntax error
    assert result.total == len(result.hits)
    assert search(archive, "charger").total == 3  # and nothing was dropped


def test_sql_fragment_query_finds_the_words_it_contains(archive):
    assert ids(search(archive, "charger'; DROP TABLE notice; --")) == []  # "drop", "table" are not in any notice
    assert ids(search(archive, 'charger" fire')) == ["n1"]  # a stray quote is dropped, the words stay
    assert ids(search(archive, "magnets OR phthalates")) == ["n3", "n4"]
    assert ids(search(archive, "charger or fire")) == []  # only upper-case OR is an operator; "or" is a word


def test_script_text_is_returned_as_text(archive):
    hit = search(archive, "alert").hits[0]
    assert hit.source_id == "n4"
    assert MARK_START + "alert" + MARK_END + "(1)" in hit.snippet  # matched as a word, never as markup


def test_query_translation_is_the_same_on_both_dialects():
    parsed = parse_query('USB "wireless charger" -cable magnet OR magnetic')
    assert parsed.clauses == [[["usb"]], [["wireless", "charger"]], [["magnet"], ["magnetic"]]]
    assert parsed.excluded == ["cable"]
    assert fts5_expression(parsed) == '"usb"* AND "wireless charger" AND ("magnet"* OR "magnetic"*) NOT "cable"*'
    assert tsquery_expression(parsed) == "'usb':* & ('wireless' <-> 'charger') & ('magnet':* | 'magnetic':*) & !'cable':*"


def test_too_many_words_is_a_clear_error():
    with pytest.raises(SearchQueryError, match="more than"):
        parse_query(" ".join(f"w{i}" for i in range(40)))


def test_bad_sort_and_limits(archive):
    with pytest.raises(SearchQueryError):
        search(archive, "x", sort="random")
    with pytest.raises(SearchQueryError):
        search(archive, "x", limit=0)


def test_pagination(archive):
    first = search(archive, "", limit=2)
    second = search(archive, "", limit=2, offset=2)
    assert first.total == second.total == 5
    assert len(set(ids(first)) | set(ids(second))) == 4
    assert MARK_END not in first.hits[0].snippet


def test_snippet_marks_prefix_words_and_phrases_in_a_window():
    from radar.search import make_snippet

    text = ("Recall notice. " + "Filler words here. " * 10 + "The USB chargers overheat and may cause an electric shock. "
            + "More filler. " * 10)
    snippet = make_snippet(text, parse_query('charger "electric shock"'), words=12)
    assert f"{MARK_START}chargers{MARK_END}" in snippet  # a prefix match, as the database matched it
    assert f"{MARK_START}electric{MARK_END} {MARK_START}shock{MARK_END}" in snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet.replace(MARK_START, "").replace(MARK_END, "").split()) <= 12
    # "shock" alone is not the phrase; excluded words are never marked.
    assert MARK_START not in make_snippet("a shock, then electricity", parse_query('"electric shock"'))
    assert MARK_START not in make_snippet("cable charger", parse_query("-cable"))


def test_snippet_without_a_match_is_the_start_and_markers_in_text_are_dropped():
    from radar.search import make_snippet

    assert make_snippet("  Short\ntext  ", parse_query("")) == "Short text"
    long = "word " * 100
    assert make_snippet(long, parse_query("")).endswith("…")
    planted = f"evil {MARK_START}fake{MARK_END} charger"
    assert make_snippet(planted, parse_query("charger")) == f"evil fake {MARK_START}charger{MARK_END}"


def test_both_ways_of_finding_a_page_give_the_same_hits_and_snippets(archive):
    """A page of a search with words is found by sorting the matches or by walking the date index (chosen
    by how many match); both give the same hits with the same snippets."""
    whole = search(archive, "charger", limit=1000)  # few matches for a big page: sorted
    pages = [search(archive, "charger", limit=1, offset=i) for i in range(whole.total)]  # small pages: walked
    assert [h.id for p in pages for h in p.hits] == [h.id for h in whole.hits]
    assert [h.snippet for p in pages for h in p.hits] == [h.snippet for h in whole.hits]


@pytest.fixture
def big_archive(engine):
    from conftest import bulk_archive

    bulk_archive(engine, 3000)
    return engine


def test_large_totals_are_estimated_from_a_sample_when_asked(big_archive):
    from radar.search import count_matching

    for query, filters in (("charger", Filters(since=date(2022, 1, 1))), ("", Filters(categories=["cat.toys"])),
                           ("-charger", Filters(categories=["cat.toys"]))):
        exact = count_matching(big_archive, query, filters)
        estimated = search(big_archive, query, filters, estimate_above=200)
        assert estimated.approximate, (query, filters)
        assert abs(estimated.total - exact) <= 0.1 * exact, (query, filters, estimated.total, exact)
        # Without the option, or under the threshold, the total is exact.
        assert search(big_archive, query, filters).total == exact
        assert not search(big_archive, query, filters).approximate
        assert (search(big_archive, query, filters, estimate_above=10_000).total, False) == (exact, False)


def test_sampled_facet_counts_are_close_to_exact_whatever_drives_the_sample(big_archive):
    """A sample is driven by what drives the search (the FTS match list, a filter's id list, or ranges of
    ids); each way the scaled counts stay close to the exact ones."""
    from radar.web.facets import facet_counts

    for query, filters in (("", Filters()), ("charger", Filters()), ("", Filters(categories=["cat.toys"])),
                           ("charger", Filters(categories=["cat.toys"], since=date(2021, 1, 1)))):
        exact = facet_counts(big_archive, query, filters)
        sampled = facet_counts(big_archive, query, filters, sample_above=200)
        assert sampled.approximate and not exact.approximate
        assert sampled.total == exact.total
        for name in ("source", "category"):
            want = {v.value: v.count for v in exact.values[name]}
            got = {v.value: v.count for v in sampled.values[name]}
            assert got.keys() == want.keys(), (query, filters, name)
            for value, count in want.items():
                assert abs(got[value] - count) <= 0.1 * count + 5, (query, filters, name, value, got[value], count)



def test_a_search_that_read_every_match_hands_their_ids_to_the_facet_counts(big_archive):
    """A total counted with the page comes with every match's id; the facets counted from them are the
    facets counted by running the search again, exactly or from a sample."""
    from radar.web.facets import facet_counts

    cases = (("charger", Filters(since=date(2022, 1, 1)), "date"), ("charger", Filters(categories=["cat.toys"]), "date"),
             ("toy", Filters(), "relevance"), ("-charger", Filters(categories=["cat.toys"]), "date"))
    for query, filters, sort in cases:
        result = search(big_archive, query, filters, sort=sort, estimate_above=10_000)
        exact = facet_counts(big_archive, query, filters)
        if result.match_ids is None:  # SQLite counts these in its FTS index alone, and reads no match
            assert big_archive.dialect.name == "sqlite" and sort == "date" and not filters.since
            continue
        assert sorted(result.match_ids) == sorted(set(result.match_ids)) and len(result.match_ids) == result.total == exact.total
        from_ids = facet_counts(big_archive, query, filters, match_ids=result.match_ids)
        assert from_ids.as_json() == exact.as_json(), (query, filters, sort)
        sampled = facet_counts(big_archive, query, filters, match_ids=result.match_ids, sample_above=200)
        assert sampled.approximate and sampled.total == exact.total
        for name in ("source", "category"):
            want = {v.value: v.count for v in exact.values[name]}
            got = {v.value: v.count for v in sampled.values[name]}
            for value, count in want.items():
                assert abs(got.get(value, 0) - count) <= 0.1 * count + 5, (query, filters, name, value)
    # A later page carries the ids too; a page past the end has none, and its total is still right.
    later = search(big_archive, "charger", Filters(since=date(2022, 1, 1)), offset=40, estimate_above=10_000)
    first = search(big_archive, "charger", Filters(since=date(2022, 1, 1)), estimate_above=10_000)
    assert later.total == first.total
    if first.match_ids is not None:
        assert sorted(later.match_ids) == sorted(first.match_ids)
    past = search(big_archive, "charger", Filters(since=date(2022, 1, 1)), offset=first.total + 100, estimate_above=10_000)
    assert (past.hits, past.total, past.match_ids) == ([], first.total, None)


def test_facets_of_no_match_are_empty_without_a_query(big_archive):
    from radar.web.facets import facet_counts

    facets = facet_counts(big_archive, "zeppelin", Filters(), total=0, keep={"category": ["cat.toys"]})
    assert facets.total == 0 and facets.years == [] and facets.gtin == {"yes": 0, "no": 0}
    assert [(v.value, v.count) for v in facets.values["category"]] == [("cat.toys", 0)]

# -- facet keys: the taxonomy filters inside the full-text index --------------------------------------


def test_facet_keys_file_a_notice_under_each_ancestor_and_leave_out_side_roles():
    from radar.search import facet_keys, facet_token

    keys = facet_keys([("category", "cat.toys.magnetic", None), ("jurisdiction", "juris.eu.de", "notified_by"),
                       ("jurisdiction", "juris.cn", "origin"), ("hazard", "hazard.fire", "inferred"),
                       ("gtin", "4006381333931", "gtin"), ("category", "cat.toys", None)]).split()
    assert sorted(keys) == sorted({facet_token("category", "cat"), facet_token("category", "cat.toys"),
                                   facet_token("category", "cat.toys.magnetic"), facet_token("jurisdiction", "juris"),
                                   facet_token("jurisdiction", "juris.eu"), facet_token("jurisdiction", "juris.eu.de")})
    assert all(k.isalnum() and k == k.lower() for k in keys)  # one token each for FTS5 and PostgreSQL
    assert facet_token("category", "cat.toys") != facet_token("hazard", "cat.toys")
    assert facet_keys([]) == ""


def test_findings_written_through_the_orm_keep_the_facet_keys_in_step(archive):
    from sqlmodel import Session, select

    from radar.models import Notice

    assert ids(search(archive, "magnetic", Filters(hazards=["hazard.choking"]))) == ["n3"]
    with session_scope(archive) as session:
        n3 = session.exec(select(Notice).where(Notice.source_id == "n3")).one()
        for finding in session.exec(select(Classification).where(Classification.notice_id == n3.id,
                                                                 Classification.axis == "hazard")):
            session.delete(finding)
        session.add(Classification(notice_id=n3.id, notice_version=1, axis="hazard", value="hazard.ingestion",
                                   method="text", pipeline_version="test"))
    assert ids(search(archive, "magnetic", Filters(hazards=["hazard.choking"]))) == []
    assert ids(search(archive, "magnetic", Filters(hazards=["hazard"]))) == ["n3"]
    with Session(archive) as session:
        keys = session.exec(select(Notice.facet_keys).where(Notice.source_id == "n3")).one()
    assert keys and all(k.startswith("f") for k in keys.split())


@pytest.mark.parametrize("query", ["f6", "f63", "F63617465676f7279", "facet_keys", "facet_keys:f6", "f6 OR charger"])
def test_query_words_never_match_the_facet_keys(archive, query):
    """Every notice has facet tokens starting f6…; a query word is looked for in the title and text only."""
    found = {h.source_id for h in search(archive, query).hits}
    assert found == ({"n1", "n2", "n5"} if "charger" in query else set())  # only the chargers' own words


def test_word_and_filter_searches_agree_with_the_classification_table(archive):
    """The same filter matched in the full-text index (with words) and from the findings (without)."""
    for filters in (Filters(jurisdictions=["juris.eu"]), Filters(categories=["cat.electrical"]),
                    Filters(hazards=["hazard.electric_shock", "hazard.fire"]),
                    Filters(jurisdictions=["juris.eu.de"], categories=["cat.toys"])):
        without_words = set(ids(search(archive, "", filters)))
        everything = set(ids(search(archive, "")))
        for query in ("charger", "-zeppelin", "doll OR magnetic OR charger"):
            matched = set(ids(search(archive, query))) & without_words
            assert set(ids(search(archive, query, filters))) == matched, (query, filters)
        assert without_words <= everything


def test_upgrading_an_archive_fills_in_its_facet_keys(db_url):
    """Revision 0005 on an archive classified before it: the keys come from the stored findings."""
    from alembic import command
    from sqlalchemy import inspect, text

    from radar.db import alembic_config, get_engine

    engine = get_engine(db_url)
    with session_scope(engine) as session:
        result = store_items(session, [NoticeItem(source="eu_safety_gate_alerts", source_id=sid, url=f"https://example.org/{sid}",
                                                  title=title, text=body, published=day, raw_body=sid.encode())
                                       for sid, title, body, day, _ in NOTICES])
        for notice_id, (_, _, _, _, findings) in zip(result.notice_ids, NOTICES):
            for axis, value, role in findings:
                session.add(Classification(notice_id=notice_id, notice_version=1, axis=axis, value=value, method="text",
                                           role=role, pipeline_version="test"))
    expected = ids(search(engine, "charger", Filters(jurisdictions=["juris.eu.de"])))
    assert expected == ["n1"]
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0004")
    with engine.connect() as connection:
        assert "facet_keys" not in [c["name"] for c in inspect(connection).get_columns("notice")]
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    with engine.connect() as connection:
        filled = connection.execute(text("SELECT count(*) FROM notice WHERE facet_keys <> ''")).scalar_one()
    assert filled == len(NOTICES)
    assert ids(search(engine, "charger", Filters(jurisdictions=["juris.eu.de"]))) == expected
    assert ids(search(engine, "charger")) == ["n1", "n2", "n5"]  # the text index was rebuilt with the keys
