"""The policy rules file: the real one loads cleanly, and every kind of mistake is named precisely."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from radar.errors import ConfigError
from radar.rules import (
    CATEGORIES_FILE,
    JURISDICTIONS_FILE,
    POLICY_CLASSES,
    RULES_FILE,
    RuleSet,
    check_rules,
    dump_rules,
    load_rules,
    parse_rules,
    rules_check_main,
    write_rules,
)

BASE_RULE = {
    "id": "rule.toys.magnets_small_parts",
    "title": "Small high-powered magnets in toys",
    "policy_class": "policy.prohibited",
    "markets": ["EU", "GB"],
    "categories": ["cat.toys.magnetic"],
    "match": {"include": {"en": ["magnetic balls", "neodymium magnets"], "de": ["magnetkugeln"]}, "exclude": {"en": ["fridge magnet"]}},
    "action": {"type": "block"},
    "legal_basis": ["Toy Safety Directive 2009/48/EC"],
    "effective_date": "2011-07-20",
    "references": ["https://eur-lex.europa.eu/eli/dir/2009/48/oj"],
}

CHARGER_RULE = {
    "id": "rule.electrical.chargers_conformity",
    "title": "Chargers need conformity documents",
    "policy_class": "policy.restricted",
    "markets": ["GB"],
    "categories": ["cat.electrical.chargers"],
    "match": {"include": {"en": ["usb charger"]}},
    "action": {"type": "restrict", "required_documents": ["Declaration of conformity"]},
    "legal_basis": ["UK Electrical Equipment (Safety) Regulations 2016"],
    "effective_date": "2016-12-08",
    "references": ["https://www.legislation.gov.uk/uksi/2016/1101"],
}


def write(tmp_path: Path, rules: list[dict], name: str = "policy_rules.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"version": 1, "rules": rules}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def rule(**changes) -> dict:
    out = copy.deepcopy(BASE_RULE)
    out.update(changes)
    return out


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    return str(info.value)


# --- the real policy ------------------------------------------------------------------------------


def test_the_starter_policy_loads_and_covers_the_emea_domains():
    ruleset = load_rules()
    assert 25 <= len(ruleset.rules) <= 45
    domains = {r.id.split(".")[1] for r in ruleset.rules}
    assert {"toys", "cosmetics", "electrical", "batteries", "ecigarettes", "laser_pointers", "weapons", "drones",
            "food_supplements", "medical_devices", "recalls", "ip", "quality"} <= domains
    assert {r.policy_class for r in ruleset.rules} == set(POLICY_CLASSES)
    for r in ruleset.rules:
        assert r.legal_basis, r.id
        assert r.references, r.id
        if r.action.type == "restrict":
            assert r.action.required_documents, r.id


def test_the_starter_policy_checks_clean_and_is_in_canonical_form():
    assert check_rules(RULES_FILE) == []
    text = RULES_FILE.read_text(encoding="utf-8")
    assert dump_rules(load_rules()) == text


def test_dump_is_stable_sorted_and_round_trips(tmp_path):
    path = write(tmp_path, [CHARGER_RULE, BASE_RULE])
    ruleset = load_rules(path)
    text = dump_rules(ruleset)
    assert text.index("rule.electrical.chargers_conformity") < text.index("rule.toys.magnets_small_parts")
    assert "markets: [EU, GB]" in text
    assert "- magnetic balls\n" in text  # one phrase per line, so a diff shows one phrase per changed line
    again = parse_rules(text)
    assert again == ruleset
    assert dump_rules(again) == text


def test_norway_survives_the_dump(tmp_path):
    ruleset = load_rules(write(tmp_path, [rule(markets=["NO", "GB"])]))
    text = dump_rules(ruleset)
    assert parse_rules(text).rules[0].markets == ["NO", "GB"]


# --- every problem named with file, rule and field ------------------------------------------------


def test_bad_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "policy_rules.yml"
    path.write_text("version: 1\nrules:\n  - id: rule.a.b\n    title: [unclosed\n", encoding="utf-8")
    message = load_error(path)
    assert str(path) in message
    assert "not valid YAML" in message and "line" in message


def test_unknown_field(tmp_path):
    message = load_error(write(tmp_path, [rule(markts=["DE"])]))
    assert "policy_rules.yml" in message
    assert "rule.toys.magnets_small_parts" in message
    assert "'markts'" in message and "unknown field" in message


def test_unknown_nested_field(tmp_path):
    bad = rule()
    bad["action"] = {"type": "block", "documents": ["x"]}
    message = load_error(write(tmp_path, [bad]))
    assert "'action.documents'" in message and "unknown field" in message


def test_duplicate_rule_id(tmp_path):
    other = rule(title="Another rule with the same id", match={"include": {"en": ["buckyballs"]}})
    message = load_error(write(tmp_path, [rule(), other]))
    assert "rule.toys.magnets_small_parts" in message and "'id'" in message and "duplicate rule id" in message


def test_unknown_policy_class(tmp_path):
    message = load_error(write(tmp_path, [rule(policy_class="policy.banned")]))
    assert "'policy_class'" in message and "policy.banned" in message and "policy.prohibited" in message


@pytest.mark.parametrize(
    ("market", "expected"),
    [("Germany", "malformed"), ("UK", "use GB"), ("de", "capitals"), ("D", "malformed"), (False, "quote")],
)
def test_malformed_market_code(tmp_path, market, expected):
    message = load_error(write(tmp_path, [rule(markets=["FR", market])]))
    assert "rule.toys.magnets_small_parts" in message
    assert "'markets[1]'" in message
    assert expected in message


def test_bare_no_in_yaml_is_reported_as_a_quoting_problem(tmp_path):
    path = tmp_path / "policy_rules.yml"
    text = yaml.safe_dump({"version": 1, "rules": [rule(markets=["GB", "NORWAY"])]}, sort_keys=False)
    path.write_text(text.replace("NORWAY", "NO"), encoding="utf-8")
    message = load_error(path)
    assert "'markets[1]'" in message and "'NO'" in message


def test_restrict_without_required_documents(tmp_path):
    bad = dict(CHARGER_RULE, action={"type": "restrict"})
    message = load_error(write(tmp_path, [bad]))
    assert "rule.electrical.chargers_conformity" in message
    assert "'action.required_documents'" in message and "restrict" in message


def test_documents_on_a_block_action_are_refused(tmp_path):
    message = load_error(write(tmp_path, [rule(action={"type": "block", "required_documents": ["x"]})]))
    assert "'action.required_documents'" in message


def test_phrase_both_include_and_exclude(tmp_path):
    # Same phrase after normalising: case, accents and punctuation do not make it a different phrase.
    bad = rule(match={"include": {"en": ["magnetic balls"], "fr": ["billes magnétiques"]},
                      "exclude": {"fr": ["Billes Magnetiques"]}})
    message = load_error(write(tmp_path, [bad]))
    assert "rule.toys.magnets_small_parts" in message
    assert "'match.exclude.fr[0]'" in message and "also an include phrase" in message


def test_two_rules_with_the_same_scope_and_terms_conflict(tmp_path):
    eu_list = ["AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
               "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "GB"]
    twin = rule(id="rule.toys.magnet_balls_review", action={"type": "review"}, markets=eu_list,
                match={"include": {"en": ["Neodymium magnets", "magnetic  balls"], "de": ["Magnetkugeln"]},
                       "exclude": {"en": ["fridge magnet"]}})
    message = load_error(write(tmp_path, [rule(), twin]))
    assert "rule.toys.magnet_balls_review" in message and "rule.toys.magnets_small_parts" in message
    assert "conflicts with" in message and "block vs review" in message


def test_identical_twin_is_reported_as_a_duplicate(tmp_path):
    message = load_error(write(tmp_path, [rule(), rule(id="rule.toys.magnets_copy")]))
    assert "duplicates rule 'rule.toys.magnets_small_parts'" in message


def test_malformed_ids_dates_urls_and_phrases(tmp_path):
    path = write(tmp_path, [
        rule(id="Rule.Toys"),
        rule(id="rule.toys.bad_date", effective_date="next week"),
        rule(id="rule.toys.bad_url", references=["eur-lex.europa.eu"]),
        rule(id="rule.toys.bad_phrase", match={"include": {"en": ["!!!"]}}),
        rule(id="rule.toys.bad_star", match={"include": {"en": ["mag*net"]}}),
        rule(id="rule.toys.bad_category", categories=["toys"]),
    ])
    lines = [line for line in check_rules(path) if line.startswith("error:")]
    assert any("'Rule.Toys' is not a rule id" in line for line in lines)
    assert any("rule.toys.bad_date" in line and "'effective_date'" in line for line in lines)
    assert any("rule.toys.bad_url" in line and "'references[0]'" in line for line in lines)
    assert any("rule.toys.bad_phrase" in line and "'match.include.en[0]'" in line and "no letters" in line for line in lines)
    assert any("rule.toys.bad_star" in line and "'*'" in line for line in lines)
    assert any("rule.toys.bad_category" in line and "'categories[0]'" in line for line in lines)


def test_load_reports_the_first_error_and_counts_the_rest(tmp_path):
    path = write(tmp_path, [rule(policy_class="policy.x"), rule(id="rule.toys.other", markets=["UK"])])
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert "and 1 more" in str(info.value)
    assert len(info.value.problems) == 2


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_rules("/nonexistent/policy_rules.yml")


# --- check and its report ----------------------------------------------------------------------------


def test_check_lists_every_problem_and_warnings(tmp_path):
    path = write(tmp_path, [
        rule(policy_class="policy.unknown"),
        dict(CHARGER_RULE, markets=["DE"], match={"include": {"en": ["usb charger", "ac"]}}),
    ])
    lines = check_rules(path)
    assert any(line.startswith("error:") and "policy.unknown" in line for line in lines)
    assert any(line.startswith("warning:") and "'ac'" in line and "shorter than 3" in line for line in lines)
    assert any(line.startswith("warning:") and "targets DE but has no phrases in de" in line for line in lines)


def test_check_warns_about_codes_missing_from_the_taxonomy(tmp_path):
    if not (CATEGORIES_FILE.exists() and JURISDICTIONS_FILE.exists()):
        pytest.skip("config/taxonomy/categories.yml or jurisdictions.yml is absent")
    lines = check_rules(write(tmp_path, [rule(markets=["XX", "GB"], categories=["cat.toys.no_such_node"])]))
    assert any("'XX' is not an iso2 code" in line for line in lines)
    assert any("'cat.toys.no_such_node' is not in categories.yml" in line for line in lines)


def test_check_warns_when_two_rules_treat_one_phrase_differently(tmp_path):
    review = dict(CHARGER_RULE, id="rule.electrical.chargers_review", action={"type": "review"},
                  match={"include": {"en": ["usb charger", "wall charger"]}})
    lines = check_rules(write(tmp_path, [CHARGER_RULE, review]))
    assert any("shares phrase 'usb charger'" in line and "restrict vs review" in line for line in lines)


def test_rules_check_main_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yml"
    good.write_text(dump_rules(RuleSet(rules=[parse_rules(yaml.safe_dump({"rules": [BASE_RULE]})).rules[0]])), encoding="utf-8")
    assert rules_check_main(good) == 0
    assert "1 rules, 0 error(s)" in capsys.readouterr().out
    bad = write(tmp_path, [rule(markets=["Germany"])], name="bad.yml")
    assert rules_check_main(bad) == 1
    out = capsys.readouterr().out
    assert "error:" in out and "1 error(s)" in out


# --- atomic write -----------------------------------------------------------------------------------


def test_write_rules_replaces_atomically_and_keeps_history(tmp_path):
    path = tmp_path / "config" / "policy_rules.yml"
    first = dump_rules(parse_rules(yaml.safe_dump({"rules": [BASE_RULE]})))
    assert write_rules(path, first) is None  # nothing to keep the first time
    second = dump_rules(parse_rules(yaml.safe_dump({"rules": [BASE_RULE, CHARGER_RULE]})))
    kept = write_rules(path, second)
    assert path.read_text(encoding="utf-8") == second
    assert kept is not None and kept.parent == path.parent / "history"
    assert kept.read_text(encoding="utf-8") == first
    assert kept.name.startswith("policy_rules.") and kept.suffix == ".yml"
    third = write_rules(path, first)
    assert third != kept and len(list((path.parent / "history").iterdir())) == 2
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_rules_refuses_an_invalid_policy_and_leaves_the_file(tmp_path):
    path = tmp_path / "policy_rules.yml"
    good = dump_rules(parse_rules(yaml.safe_dump({"rules": [BASE_RULE]})))
    write_rules(path, good)
    before = os.stat(path).st_mtime_ns
    with pytest.raises(ConfigError, match="policy.banned"):
        write_rules(path, good.replace("policy.prohibited", "policy.banned"))
    assert path.read_text(encoding="utf-8") == good
    assert os.stat(path).st_mtime_ns == before
    assert not (tmp_path / "history").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["policy_rules.yml"]


def test_write_rules_keeps_the_file_mode(tmp_path):
    path = tmp_path / "policy_rules.yml"
    good = dump_rules(parse_rules(yaml.safe_dump({"rules": [BASE_RULE]})))
    path.write_text(good, encoding="utf-8")
    path.chmod(0o640)
    write_rules(path, good)
    assert path.stat().st_mode & 0o777 == 0o640
