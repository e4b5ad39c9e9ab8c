"""The taxonomy files load, hang together, cover the real source labels, and bad files fail with a fix."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from nlp.taxonomy import DEFAULT_DIRECTORY, JurisdictionNode, Taxonomy, load_cached
from radar.errors import ConfigError

REAL_DATA = Path(__file__).parents[1].parent / "shared/data/real"

EU_MEMBERS = "at be bg hr cy cz dk ee fi fr de gr hu ie it lv lt lu mt nl pl pt ro sk si es se".split()


def real(*parts: str) -> Path:
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared beside the checkout)")
    return path


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load()


# ---------------------------------------------------------------------------------- shipped files


def test_shipped_taxonomy_loads_every_axis(taxonomy):
    assert set(taxonomy.axes) == {"category", "hazard", "jurisdiction", "policy", "severity", "substance"}
    assert taxonomy.directory == DEFAULT_DIRECTORY
    assert len(taxonomy.axis("category")) >= 40
    for node_id in [
        "cat.toys", "cat.toys.magnetic", "cat.electrical.chargers", "cat.cosmetics", "cat.childcare",
        "cat.vehicles", "cat.ecigarettes", "cat.batteries.lithium", "cat.food", "cat.drugs",
        "cat.medical_devices", "cat.clothing", "cat.furniture", "cat.jewellery", "cat.sports",
        "cat.laser_pointers", "cat.weapons.knives", "cat.drones", "cat.food_supplements",
        "hazard.choking", "hazard.chemical", "hazard.electric_shock", "hazard.fire", "hazard.burns",
        "hazard.injuries", "hazard.strangulation", "hazard.suffocation", "hazard.microbiological",
        "hazard.allergen", "hazard.cuts", "hazard.falls", "hazard.drowning", "hazard.entrapment",
        "hazard.hearing", "hazard.vision", "hazard.environment", "hazard.health_risk",
        "juris.eu", "juris.uk", "juris.ch", "juris.tr", "juris.il", "juris.za", "juris.us", "juris.ca",
        "juris.au", "juris.cn", "juris.hk", "juris.in", "juris.vn", "juris.tw", "juris.kr", "juris.jp",
        "juris.eea.no", "juris.eea.is", "juris.eea.li", "juris.gcc.sa", "juris.gcc.ae",
        "policy.prohibited", "policy.restricted", "policy.not_supported", "policy.trade_controlled",
        "policy.listing_quality", "policy.intellectual_property",
        "severity.serious", "severity.low",
    ]:
        assert node_id in taxonomy, node_id
    assert all(node.description for node in taxonomy.axis("policy"))


def test_every_eu_member_state_has_codes_and_names_in_four_languages(taxonomy):
    members = [n for n in taxonomy.axis("jurisdiction") if n.parent == "juris.eu"]
    assert sorted(n.id.rsplit(".", 1)[1] for n in members) == sorted(EU_MEMBERS)
    for node in members:
        assert isinstance(node, JurisdictionNode)
        assert node.iso2 and node.iso3, node.id
        assert {"en", "fr", "de"} <= set(node.names), node.id


def test_regulators_are_named_for_the_main_markets(taxonomy):
    for node_id, acronym in [("juris.eu", "DG JUST"), ("juris.uk", "OPSS"), ("juris.us", "CPSC"),
                             ("juris.eu.de", "BAuA"), ("juris.eu.fr", "DGCCRF")]:
        node = taxonomy[node_id]
        assert isinstance(node, JurisdictionNode)
        assert acronym in {r.acronym for r in node.regulators}, node_id


def test_every_crosswalk_target_and_reference_exists(taxonomy):
    entries = list(taxonomy.crosswalk_entries())
    assert len(entries) > 500
    for axis, publisher, _entry, target in entries:
        assert target in taxonomy, target
        assert taxonomy[target].axis == axis
        assert publisher == "any" or publisher in taxonomy.publishers
    for publisher in taxonomy.publishers.values():
        assert publisher.jurisdiction is None or publisher.jurisdiction in taxonomy
    for node in taxonomy:
        assert node.parent is None or node.parent in taxonomy, node.id


def test_hierarchy(taxonomy):
    toys = taxonomy.descendants("cat.toys")
    assert toys[0] == "cat.toys"
    assert "cat.toys.magnetic" in toys and "cat.childcare" not in toys
    assert taxonomy.descendants("cat.toys.magnetic") == ["cat.toys.magnetic"]
    assert taxonomy.ancestors("juris.eu.de") == ["juris.eu"]
    assert taxonomy.ancestors("juris.eu") == []
    assert taxonomy.get("cat.nothing") is None
    with pytest.raises(KeyError):
        taxonomy.descendants("cat.nothing")
    with pytest.raises(KeyError):
        taxonomy.axis("colour")


def test_jurisdiction_for_market(taxonomy):
    assert taxonomy.jurisdiction_for_market("DE") == "juris.eu.de"
    assert taxonomy.jurisdiction_for_market(" de ") == "juris.eu.de"
    assert taxonomy.jurisdiction_for_market("UK") == taxonomy.jurisdiction_for_market("gb") == "juris.uk"
    assert taxonomy.jurisdiction_for_market("EU") == "juris.eu"
    assert taxonomy.jurisdiction_for_market("EL") == taxonomy.jurisdiction_for_market("GR") == "juris.eu.gr"
    assert taxonomy.jurisdiction_for_market("NO") == "juris.eea.no"
    assert taxonomy.jurisdiction_for_market("deu") == "juris.eu.de"
    assert taxonomy.jurisdiction_for_market("ZZ") is None
    assert taxonomy.jurisdiction_for_market("") is None
    assert taxonomy.jurisdiction_for_market(None) is None


def test_crosswalk_exact_contains_regex_and_precedence(taxonomy):
    sg = "eu_safety_gate_alerts"
    assert taxonomy.crosswalk("category", sg, "Toys") == ["cat.toys"]
    assert taxonomy.crosswalk("category", sg, "  TOYS. ") == ["cat.toys"]
    assert taxonomy.crosswalk("category", sg, "Childcare articles and children\u2019s equipment") == ["cat.childcare"]
    # CPSC product types: exact entries first, the regex family (^toys?) for the rest.
    assert taxonomy.crosswalk("category", "us_cpsc_recalls", "Toy Ride-on") == ["cat.toys.ride_on"]
    assert taxonomy.crosswalk("category", "us_cpsc_recalls", "Toy Spinning Tops") == ["cat.toys"]
    # RappelConso: contains: entries.
    assert taxonomy.crosswalk("hazard", "fr_dgccrf_rappelconso", "Listeria monocytogenes (agent de la listériose)") == [
        "hazard.microbiological"
    ]
    # One label, two nodes.
    assert taxonomy.crosswalk("hazard", "us_cpsc_recalls", "Fire & Fire-Related Burn") == ["hazard.fire", "hazard.burns"]
    # Country names are written alike by everyone: the `any` crosswalk, names and codes.
    for label in ["Germany", "Allemagne", "Deutschland", "DE", "DEU"]:
        assert taxonomy.crosswalk("jurisdiction", "uk_opss_alerts", label) == ["juris.eu.de"], label
    for label in ["People's Republic of China", "Peoples Republic of China", "PRC", "China"]:
        assert taxonomy.crosswalk("jurisdiction", "some_unknown_source", label) == ["juris.cn"], label
    assert taxonomy.crosswalk("severity", "uk_opss_alerts", "Serious") == ["severity.serious"]


def test_lookup_tells_ignored_from_unmapped(taxonomy):
    assert taxonomy.lookup("category", "uk_opss_alerts", "Other") == []
    assert taxonomy.lookup("jurisdiction", "eu_safety_gate_alerts", "Unknown") == []
    assert taxonomy.lookup("category", "uk_opss_alerts", "Gizmos of doom") is None
    # Publisher labels do not leak to other publishers: "Lighting chains" is Safety Gate's.
    assert taxonomy.lookup("category", "us_cpsc_recalls", "Lighting chains") is None
    assert taxonomy.crosswalk("category", "us_cpsc_recalls", "Lighting chains") == []


def test_sources_map_to_publishers(taxonomy):
    assert taxonomy.publisher_for_source("eu_safety_gate_alerts") == "safety_gate"
    assert taxonomy.publisher_for_source("uk_opss_alerts") == "opss"
    assert taxonomy.publisher_for_source("us_cpsc_recalls") == "cpsc"
    assert taxonomy.publisher_for_source("fr_dgccrf_rappelconso") == "rappelconso"
    assert taxonomy.publisher_for_source("us_fda_enforcement") == "fda"
    assert taxonomy.publisher_for_source("cpsc") == "cpsc"
    assert taxonomy.publisher_for_source("de_baua_alerts") is None
    assert taxonomy.publisher_for_source(None) is None


def test_google_product_ids_are_real(taxonomy):
    path = real("google_product_taxonomy", "taxonomy-with-ids.en-US.txt")
    known = {int(m.group(1)) for m in re.finditer(r"^(\d+) - ", path.read_text(encoding="utf-8"), re.M)}
    used = {gid: node.id for node in taxonomy.axis("category") for gid in node.google_product_ids}
    assert len(used) >= 60
    assert not {gid: nid for gid, nid in used.items() if gid not in known}


def test_opss_finder_vocabulary_maps_completely(taxonomy):
    facets = json.loads(real("uk_opss_finder_vocabulary", "opss_finder_facets.json").read_text())["facets"]
    values = {f["key"]: [v["label"] for v in f["allowed_values"]] for f in facets if "allowed_values" in f}
    for label in values["product_category"]:
        assert taxonomy.lookup("category", "uk_opss_alerts", label) is not None, label
    for label in values["product_risk_level"]:
        assert taxonomy.crosswalk("severity", "uk_opss_alerts", label), label


def test_cpsc_labels_map(taxonomy):
    results = json.loads(real("cpsc_recalls_legacy_api", "cpsc_recalls.dev.json").read_text())["success"]["results"]
    for field, axis, floor in [("product_types", "category", 0.95), ("hazards", "hazard", 1.0), ("countries", "jurisdiction", 0.95)]:
        labels = {label for r in results for label in r.get(field) or []}
        mapped = [label for label in labels if taxonomy.lookup(axis, "us_cpsc_recalls", label) is not None]
        assert len(mapped) / len(labels) >= floor, (field, sorted(labels - set(mapped)))


def test_load_cached_reuses_until_a_file_changes(tmp_path):
    directory = _write(tmp_path, {"categories.yml": MINIMAL_CATEGORIES})
    first = load_cached(directory)
    assert load_cached(directory) is first
    (directory / "categories.yml").write_text(MINIMAL_CATEGORIES.replace("Toys", "Playthings") + "\n")
    second = load_cached(directory)
    assert second is not first
    assert second["cat.toys"].label == "Playthings"
    assert second.fingerprint != first.fingerprint


# ------------------------------------------------------------------------------------ bad files

PUBLISHERS = """
publishers:
  safety_gate:
    name: Safety Gate
    sources: [eu_safety_gate_*]
"""

MINIMAL_CATEGORIES = """
axis: category
prefix: cat
nodes:
  cat.toys:
    label: Toys
    google_product_ids: [1239]
    crosswalk:
      safety_gate: [Toys]
  cat.toys.magnetic:
    label: Magnetic toys
"""


def _write(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "taxonomy"
    directory.mkdir(exist_ok=True)
    for name, body in {"publishers.yml": PUBLISHERS, **files}.items():
        (directory / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return directory


def _error(tmp_path: Path, files: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        Taxonomy.load(_write(tmp_path, files))
    return str(info.value)


def test_minimal_directory_loads(tmp_path):
    taxonomy = Taxonomy.load(_write(tmp_path, {"categories.yml": MINIMAL_CATEGORIES}))
    assert taxonomy.axes == ("category",)
    assert taxonomy.crosswalk("category", "eu_safety_gate_weekly", "toys") == ["cat.toys"]


def test_typo_in_a_field_names_file_node_and_field(tmp_path):
    message = _error(tmp_path, {"categories.yml": MINIMAL_CATEGORIES.replace("google_product_ids:", "google_product_idz:")})
    assert "categories.yml" in message and "cat.toys" in message and "google_product_idz" in message
    assert "unknown field" in message


def test_typo_in_a_top_level_key(tmp_path):
    message = _error(tmp_path, {"categories.yml": MINIMAL_CATEGORIES.replace("nodes:", "node:")})
    assert "categories.yml" in message and "node" in message


def test_duplicate_id(tmp_path):
    body = MINIMAL_CATEGORIES + "  cat.toys:\n    label: Toys again\n"
    message = _error(tmp_path, {"categories.yml": body})
    assert "categories.yml" in message and "duplicate" in message and "cat.toys" in message


def test_one_file_per_axis(tmp_path):
    # Ids carry their axis's prefix, so one file per axis also rules out an id defined in two files.
    other = MINIMAL_CATEGORIES.replace("cat.toys.magnetic", "cat.toys.other")
    message = _error(tmp_path, {"categories.yml": MINIMAL_CATEGORIES, "more_categories.yml": other})
    assert "more_categories.yml" in message and "axis 'category' is already defined" in message


def test_missing_parent(tmp_path):
    body = MINIMAL_CATEGORIES + "  cat.vehicles.cars:\n    label: Cars\n"
    message = _error(tmp_path, {"categories.yml": body})
    assert "categories.yml" in message and "cat.vehicles.cars" in message and "'cat.vehicles'" in message


def test_malformed_id(tmp_path):
    for bad in ["cat.Toys", "toys", "cat..toys", "hazard.toys"]:
        body = MINIMAL_CATEGORIES.replace("cat.toys.magnetic:", f"{bad}:")
        message = _error(tmp_path, {"categories.yml": body})
        assert "categories.yml" in message and bad in message, message


def test_unknown_language_code(tmp_path):
    jurisdictions = """
    axis: jurisdiction
    prefix: juris
    nodes:
      juris.de:
        label: Germany
        names: {ger: Deutschland}
    """
    message = _error(tmp_path, {"jurisdictions.yml": jurisdictions})
    assert "jurisdictions.yml" in message and "juris.de" in message and "'ger'" in message and "ISO 639-1" in message


def test_unknown_publisher_in_a_crosswalk(tmp_path):
    message = _error(tmp_path, {"categories.yml": MINIMAL_CATEGORIES.replace("safety_gate:", "rapex:")})
    assert "categories.yml" in message and "rapex" in message and "publishers.yml" in message


def test_bad_regex(tmp_path):
    body = MINIMAL_CATEGORIES.replace("[Toys]", "[{regex: '^toy(s'}]")
    message = _error(tmp_path, {"categories.yml": body})
    assert "categories.yml" in message and "cat.toys" in message and "does not compile" in message


def test_words_in_the_yaml_say_where_they_live_now(tmp_path):
    body = MINIMAL_CATEGORIES + "    terms: {en: [magnet toy]}\n"
    message = _error(tmp_path, {"categories.yml": body})
    assert "categories.yml" in message and "cat.toys.magnetic" in message and "nlp/patterns/terms/<lang>.jsonl" in message


def test_typical_hazards_must_be_hazard_ids(tmp_path):
    hazards = "axis: hazard\nprefix: hazard\nnodes:\n  hazard.choking:\n    label: Choking\n"
    body = MINIMAL_CATEGORIES + "    typical_hazards: [hazard.choking]\n"
    taxonomy = Taxonomy.load(_write(tmp_path, {"categories.yml": body, "hazards.yml": hazards}))
    assert taxonomy.typical_hazards("cat.toys.magnetic") == ["hazard.choking"]
    assert taxonomy.typical_hazards("cat.toys") == []
    message = _error(tmp_path, {"categories.yml": body.replace("[hazard.choking]", "[hazard.chocking]"),
                                "hazards.yml": hazards})
    assert "categories.yml" in message and "cat.toys.magnetic" in message and "'hazard.chocking'" in message


def test_not_yaml_at_all(tmp_path):
    message = _error(tmp_path, {"categories.yml": "axis: category\nnodes: [unclosed\n  - {: :\n"})
    assert "categories.yml" in message and "not valid YAML" in message and "line" in message


def test_yaml_that_is_not_a_mapping(tmp_path):
    message = _error(tmp_path, {"categories.yml": "- just\n- a list\n"})
    assert "categories.yml" in message and "mapping" in message


def test_bare_no_is_explained(tmp_path):
    jurisdictions = """
    axis: jurisdiction
    prefix: juris
    nodes:
      juris.no:
        label: Norway
        iso2: NO
    """
    message = _error(tmp_path, {"jurisdictions.yml": jurisdictions})
    assert "jurisdictions.yml" in message and "juris.no" in message and "quote it" in message


def test_unknown_axis_and_wrong_prefix(tmp_path):
    assert "unknown axis" in _error(tmp_path, {"colours.yml": "axis: colour\nprefix: col\nnodes: {}\n"})
    assert "'cat'" in _error(tmp_path, {"categories.yml": MINIMAL_CATEGORIES.replace("prefix: cat", "prefix: category")})


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Taxonomy.load(tmp_path / "nowhere")
