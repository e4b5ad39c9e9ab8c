"""The listing policy as data: the models of config/policy_rules.yml, its loader, checker, canonical dump and writer."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from radar.errors import ConfigError
from radar.matcher import eu_member_states, expand_markets, phrase_key

log = logging.getLogger(__name__)

# libyaml's safe loader when PyYAML was built with it: same results, several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = REPO_ROOT / "config" / "policy_rules.yml"
TAXONOMY_DIR = REPO_ROOT / "config" / "taxonomy"
CATEGORIES_FILE = TAXONOMY_DIR / "categories.yml"
POLICY_CLASSES_FILE = TAXONOMY_DIR / "policy_classes.yml"
JURISDICTIONS_FILE = TAXONOMY_DIR / "jurisdictions.yml"
HISTORY_DIR = "history"

# The classes DESIGN.md names; config/taxonomy/policy_classes.yml may add more (policy_classes()).
POLICY_CLASSES = (
    "policy.prohibited",
    "policy.restricted",
    "policy.not_supported",
    "policy.trade_controlled",
    "policy.listing_quality",
    "policy.intellectual_property",
)
ACTION_TYPES = ("block", "restrict", "review")

# Which language a seller in each market mostly writes in; used only to warn when a rule aimed at a
# market has no phrases in its language.
MARKET_LANGUAGES = {
    "DE": {"de"}, "AT": {"de"}, "FR": {"fr"}, "BE": {"fr", "nl"}, "LU": {"fr", "de"}, "NL": {"nl"},
    "IT": {"it"}, "ES": {"es"}, "PT": {"pt"}, "PL": {"pl"}, "GB": {"en"}, "IE": {"en"}, "SE": {"sv"},
    "DK": {"da"}, "FI": {"fi"}, "CZ": {"cs"}, "GR": {"el"}, "RO": {"ro"}, "HU": {"hu"},
}

RULE_ID = r"^rule\.[a-z0-9_]+(\.[a-z0-9_]+)+$"
CATEGORY_ID = r"^cat\.[a-z0-9_]+(\.[a-z0-9_]+)*$"
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _taxonomy_ids(path: Path, prefix: str, key: str | None = None) -> list[str]:
    """Node ids under ``prefix`` in a taxonomy file (or the values of ``key`` in its nodes); [] when absent."""
    if not path.exists():
        return []
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        log.warning("%s unreadable (%s); ignoring it", path, exc)
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if key is None and isinstance(name, str) and re.fullmatch(rf"{re.escape(prefix)}\.[a-z0-9_.]+", name):
                    found.append(name)
                if key is not None and name == key and isinstance(value, str):
                    found.append(value.upper())
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return list(dict.fromkeys(found))


@lru_cache(maxsize=1)
def policy_classes() -> tuple[str, ...]:
    """The policy classes a rule may name: the built-in ones plus any the taxonomy adds."""
    return tuple(dict.fromkeys(POLICY_CLASSES + tuple(_taxonomy_ids(POLICY_CLASSES_FILE, "policy"))))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, str_strip_whitespace=True)


class MatchTerms(_Strict):
    """The phrases that bring a listing within a rule's reach, and those that take it out again."""

    include: dict[Language, list[Phrase]] = Field(min_length=1)
    """Phrases per ISO 639-1 language; any one of them, as whole words, puts a listing in reach."""
    exclude: dict[Language, list[Phrase]] = Field(default_factory=dict)
    """Phrases per language that veto the rule for a listing even when an include phrase hit."""

    @field_validator("include", "exclude")
    @classmethod
    def _phrases_have_words(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for language, phrases in value.items():
            for position, phrase in enumerate(phrases):
                core = phrase.strip("*")
                if "*" in core:
                    raise ValueError(f"{language}[{position}] {phrase!r}: '*' may only open the start or the end of a phrase")
                if not phrase_key(phrase).words:
                    raise ValueError(f"{language}[{position}] {phrase!r} has no letters or digits to match")
        return value


class Action(_Strict):
    """What the platform does with a listing the rule hits."""

    type: Literal["block", "restrict", "review"]
    """block: take the listing down; restrict: allow only with the documents below; review: send to a person."""
    required_documents: list[Phrase] = Field(default_factory=list)
    """For restrict: the documents a seller must provide (declaration of conformity, test report, …)."""

    @model_validator(mode="after")
    def _documents_match_type(self) -> Action:
        if self.type == "restrict" and not self.required_documents:
            raise ValueError("required_documents: a restrict action must list the documents a seller has to provide")
        if self.type != "restrict" and self.required_documents:
            raise ValueError(f"required_documents: only a restrict action takes documents, this one is {self.type!r}")
        return self


class Rule(_Strict):
    """One listing rule: what it catches, where, what happens, and on which legal basis."""

    id: str = Field(pattern=RULE_ID)
    """Stable dotted id, ``rule.<domain>.<name>``; never reused for a different rule."""
    title: str = Field(min_length=3)
    """One line a reviewer reads in a diff or the digest."""
    policy_class: str
    """One of the policy classes: policy.prohibited, restricted, not_supported, trade_controlled, listing_quality, intellectual_property."""
    markets: list[str] = Field(min_length=1)
    """ISO 3166-1 alpha-2 market codes (DE, FR, GB, …) or EU for every member state."""
    categories: list[Annotated[str, StringConstraints(pattern=CATEGORY_ID)]] = Field(default_factory=list)
    """Taxonomy category ids the rule is about (cat.toys.magnetic); empty means every category."""
    match: MatchTerms
    """Include and exclude phrases, per language."""
    action: Action
    """What happens to a listing the rule hits."""
    legal_basis: list[Phrase] = Field(default_factory=list)
    """The legislation or standard the rule rests on, one citation per item."""
    effective_date: date
    """The day the rule applies from (ISO date)."""
    references: list[str] = Field(default_factory=list)
    """URLs of the legal text, guidance or notices behind the rule."""
    notes: str | None = None
    """Free text for reviewers: scope decisions, known false positives."""

    @field_validator("policy_class")
    @classmethod
    def _known_policy_class(cls, value: str) -> str:
        known = policy_classes()
        if value not in known:
            raise ValueError(f"unknown policy class {value!r}; use one of {', '.join(known)}")
        return value

    @field_validator("markets", mode="before")
    @classmethod
    def _market_codes(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for position, code in enumerate(value):
            if isinstance(code, bool):
                # YAML 1.1 reads the bare word NO (Norway) as false.
                raise ValueError(f"[{position}] YAML read {code!r}: quote the market code, e.g. 'NO'")
            if not isinstance(code, str):
                raise ValueError(f"[{position}] {code!r} is not a market code (DE, FR, GB, … or EU)")
            code = code.strip()
            if code == "UK":
                raise ValueError(f"[{position}] 'UK' is not an ISO 3166 code: use GB")
            if code.upper() != code and re.fullmatch(r"[A-Za-z]{2}", code):
                raise ValueError(f"[{position}] market {code!r}: write ISO codes in capitals, {code.upper()!r}")
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"[{position}] market {code!r} is malformed: use an ISO 3166-1 alpha-2 code (DE, FR, GB) or EU")
            if code in out:
                raise ValueError(f"[{position}] market {code!r} is listed twice")
            out.append(code)
        return out

    @field_validator("references")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for position, url in enumerate(value):
            if not re.match(r"^https?://\S+$", url):
                raise ValueError(f"[{position}] {url!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _include_exclude_disjoint(self) -> Rule:
        included = {phrase_key(p).key: p for ps in self.match.include.values() for p in ps}
        for language, phrases in self.match.exclude.items():
            for position, phrase in enumerate(phrases):
                clash = included.get(phrase_key(phrase).key)
                if clash is not None:
                    raise ValueError(
                        f"match.exclude.{language}[{position}]: {phrase!r} is also an include phrase ({clash!r}); "
                        "a phrase cannot both bring a listing in and take it out"
                    )
        return self

    # helpers used by the matcher, impact and drafting ---------------------------------------------

    def include_phrases(self) -> list[str]:
        """Every include phrase, all languages."""
        return [p for phrases in self.match.include.values() for p in phrases]

    def exclude_phrases(self) -> list[str]:
        """Every exclude phrase, all languages."""
        return [p for phrases in self.match.exclude.values() for p in phrases]


class RuleSet(_Strict):
    """The whole policy file."""

    version: int = 1
    """Format version of the file, so a later format change can be migrated."""
    rules: list[Rule] = Field(default_factory=list)
    """The rules; their order in the file carries no meaning (dumps sort them by id)."""

    def by_id(self, rule_id: str) -> Rule:
        """The rule with ``rule_id``; KeyError when absent."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


# --- loading and checking -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding of the loader or the checker."""

    level: Literal["error", "warning"]
    source: str
    rule_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.rule_id:
            where += f": rule {self.rule_id!r}"
        if self.field:
            where += f" field {self.field!r}"
        return f"{self.level}: {where}: {self.message}"


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_problems(exc: ValidationError, source: str, rule_id: str | None, prefix: str = "") -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        field = _loc(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = {"match": MatchTerms, "action": Action}.get(str(err["loc"][0]), Rule) if len(err["loc"]) > 1 else Rule
            message = f"unknown field; expected one of {', '.join(model.model_fields)}"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "string_pattern_mismatch" and field == "id":
            message = f"{err['input']!r} is not a rule id: use rule.<domain>.<name>, lower case, e.g. rule.toys.magnets_small_parts"
        elif err["type"] == "string_pattern_mismatch" and field.startswith("categories"):
            message = f"{err['input']!r} is not a category id: use a taxonomy id such as cat.toys.magnetic"
        # Validators report list positions at the start of their message ("[2] 'UK' …"); fold them into the field.
        found = re.match(r"^(\[\d+\]|[a-z]{2}\[\d+\]) (.*)$", message)
        if found:
            position = found.group(1)
            field = f"{field}{position}" if position.startswith("[") else f"{field}.{position}"
            message = found.group(2)
        elif message.startswith(("required_documents:", "match.exclude.")):
            sub, message = message.split(": ", 1)
            field = sub if sub.startswith("match.") else f"{field}.{sub}" if field else sub
        problems.append(Problem("error", source, rule_id, prefix + field if field else None, message))
    return problems


def _parse(text: str, source: str) -> tuple[RuleSet | None, list[Problem]]:
    """Validate policy YAML text, collecting every error rather than stopping at the first."""
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem("error", source, None, None, f"not valid YAML{where}: {problem}")]
    if data is None:
        data = {"rules": []}
    if not isinstance(data, dict):
        return None, [Problem("error", source, None, None, "expected a mapping with a 'rules' list at the top")]
    problems: list[Problem] = []
    for key in data:
        if key not in ("version", "rules"):
            problems.append(Problem("error", source, None, str(key), "unknown top-level field; expected version and rules"))
    raw_rules = data.get("rules") or []
    if not isinstance(raw_rules, list):
        return None, problems + [Problem("error", source, None, "rules", "expected a list of rules")]
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for position, raw in enumerate(raw_rules):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        label = str(rule_id) if rule_id else f"#{position + 1}"
        if not isinstance(raw, dict):
            problems.append(Problem("error", source, label, None, "a rule must be a mapping of fields"))
            continue
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            problems += _validation_problems(exc, source, label)
            continue
        if rule.id in seen:
            problems.append(Problem("error", source, rule.id, "id", f"duplicate rule id (also rule #{seen[rule.id] + 1}); ids must be unique"))
            continue
        seen[rule.id] = position
        rules.append(rule)
    problems += _conflicts(rules, source)
    try:
        ruleset = RuleSet(version=data.get("version", 1), rules=rules)
    except ValidationError as exc:
        problems += _validation_problems(exc, source, None)
        ruleset = None
    # The rules that did validate come back even when others failed, so a check can still warn about them.
    return ruleset, problems


def _scope_signature(rule: Rule, eu: frozenset[str]) -> tuple:
    # "EU" and the list of its member states are the same scope.
    return (
        expand_markets(rule.markets, eu) - {"EU"},
        frozenset(rule.categories),
        frozenset(phrase_key(p).key for p in rule.include_phrases()),
        frozenset(phrase_key(p).key for p in rule.exclude_phrases()),
    )


def _conflicts(rules: list[Rule], source: str) -> list[Problem]:
    """Two rules with the same scope and terms: one of them is redundant, or they disagree."""
    eu = eu_member_states()
    first: dict[tuple, Rule] = {}
    problems = []
    for rule in rules:
        signature = _scope_signature(rule, eu)
        other = first.get(signature)
        if other is None:
            first[signature] = rule
            continue
        same = other.action == rule.action and other.policy_class == rule.policy_class
        what = "duplicates" if same else f"conflicts with (action {other.action.type} vs {rule.action.type})"
        problems.append(
            Problem(
                "error", source, rule.id, "match",
                f"{what} rule {other.id!r}: same markets, categories and match terms; merge them or narrow one",
            )
        )
    return problems


def _raise_for(problems: list[Problem], source: str) -> None:
    errors = [p for p in problems if p.level == "error"]
    if not errors:
        return
    message = str(errors[0]).removeprefix("error: ")
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more; run `radar rules check {source}` for all)"
    exc = ConfigError(message)
    exc.problems = errors  # type: ignore[attr-defined]
    raise exc


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load and validate the policy file (default ``config/policy_rules.yml``); ConfigError on any problem."""
    path = Path(path) if path is not None else RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy rules file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy rules file ({exc})") from None
    ruleset, problems = _parse(text, str(path))
    _raise_for(problems, str(path))
    if ruleset is None:  # pragma: no cover - _raise_for raised already
        raise ConfigError(f"{path}: no rules could be read")
    log.debug("loaded %d rules from %s", len(ruleset.rules), path)
    return ruleset


def parse_rules(text: str, source: str = "<text>") -> RuleSet:
    """Validate policy YAML given as text (a proposed version, say); ConfigError on any problem."""
    ruleset, problems = _parse(text, source)
    _raise_for(problems, source)
    if ruleset is None:  # pragma: no cover - _raise_for raised already
        raise ConfigError(f"{source}: no rules could be read")
    return ruleset


def _known_categories() -> set[str] | None:
    return set(_taxonomy_ids(CATEGORIES_FILE, "cat")) or None


def _known_markets() -> set[str] | None:
    return set(_taxonomy_ids(JURISDICTIONS_FILE, "juris", key="iso2")) or None


def _warnings(ruleset: RuleSet, source: str) -> list[Problem]:
    problems: list[Problem] = []
    known_categories = _known_categories()
    known_markets = _known_markets()
    eu = eu_member_states()
    today = date.today()

    def warn(rule: Rule, field: str | None, message: str) -> None:
        problems.append(Problem("warning", source, rule.id, field, message))

    for rule in ruleset.rules:
        if not rule.references:
            warn(rule, "references", "no reference URL; reviewers cannot check the legal basis")
        if not rule.legal_basis and rule.policy_class in ("policy.prohibited", "policy.restricted", "policy.trade_controlled"):
            warn(rule, "legal_basis", f"a {rule.policy_class} rule without a legal basis")
        keys: dict[str, str] = {}
        for language, phrases in list(rule.match.include.items()) + list(rule.match.exclude.items()):
            for phrase in phrases:
                pk = phrase_key(phrase)
                if len(pk.words.replace(" ", "")) < 3:
                    warn(rule, f"match.{language}", f"phrase {phrase!r} is shorter than 3 letters: expect false positives")
                if pk.key in keys:
                    warn(rule, f"match.{language}", f"phrase {phrase!r} repeats {keys[pk.key]!r} (same after normalising)")
                keys[pk.key] = phrase
        languages = set(rule.match.include)
        for market in rule.markets:
            wanted = MARKET_LANGUAGES.get(market)
            if wanted and not wanted & languages:
                warn(rule, "match.include", f"targets {market} but has no phrases in {'/'.join(sorted(wanted))}")
        if known_markets is not None:
            for market in rule.markets:
                if market != "EU" and market not in known_markets:
                    warn(rule, "markets", f"{market!r} is not an iso2 code in {JURISDICTIONS_FILE.name}")
        if known_categories is not None:
            for category in rule.categories:
                if category not in known_categories:
                    warn(rule, "categories", f"{category!r} is not in {CATEGORIES_FILE.name}")
        if rule.effective_date > today:
            warn(rule, "effective_date", f"not in force until {rule.effective_date.isoformat()}")
    # Same include phrase in two rules whose markets and categories overlap but whose actions differ:
    # a listing then gets two different treatments, which is usually an oversight.
    owners: dict[str, list[Rule]] = {}
    for rule in ruleset.rules:
        for key in {phrase_key(p).key for p in rule.include_phrases()}:
            owners.setdefault(key, []).append(rule)
    reported: set[tuple[str, str]] = set()
    for key, rules in owners.items():
        for i, a in enumerate(rules):
            for b in rules[i + 1 :]:
                if (a.id, b.id) in reported or a.action.type == b.action.type:
                    continue
                markets = expand_markets(a.markets, eu) & expand_markets(b.markets, eu)
                categories_overlap = not a.categories or not b.categories or any(
                    x == y or x.startswith(y + ".") or y.startswith(x + ".") for x in a.categories for y in b.categories
                )
                if markets and categories_overlap:
                    reported.add((a.id, b.id))
                    warn(
                        b, "match.include",
                        f"shares phrase {key.strip()!r} with {a.id!r} in {', '.join(sorted(m for m in markets if m != 'EU')[:5])}"
                        f"{'…' if len(markets) > 6 else ''} but acts differently ({a.action.type} vs {b.action.type})",
                    )
    return problems


def check_rules(path: str | Path | None = None) -> list[str]:
    """Every error and warning in the policy file, one line each (``error: …`` / ``warning: …``)."""
    path = Path(path) if path is not None else RULES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"error: {path}: cannot read the policy rules file ({exc})"]
    ruleset, problems = _parse(text, str(path))
    if ruleset is not None:
        errors = any(p.level == "error" for p in problems)
        problems += _warnings(ruleset, str(path))
        if not errors and dump_rules(ruleset) != text:
            problems.append(
                Problem("warning", str(path), None, None, "not in canonical form; a machine-written diff will also reformat it")
            )
    return [str(p) for p in problems]


def rules_check_main(path: str | Path | None = None, out: Any = None) -> int:
    """Print a report of :func:`check_rules`; exit code 0 when there are no errors (warnings allowed), 1 otherwise."""
    out = out or sys.stdout
    path = Path(path) if path is not None else RULES_FILE
    lines = check_rules(path)
    errors = sum(1 for line in lines if line.startswith("error:"))
    warnings = len(lines) - errors
    for line in lines:
        print(line, file=out)
    count = ""
    if not errors:
        count = f"{len(load_rules(path).rules)} rules, "
    print(f"{path}: {count}{errors} error(s), {warnings} warning(s)", file=out)
    return 1 if errors else 0


# --- canonical dump and atomic write -----------------------------------------------------------------


class _Flow(list):
    """A list dumped on one line ([DE, FR]); short code lists read better that way."""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))

_HEADER = (
    "# Listing policy rules (see radar/rules.py for the format).\n"
    "# Rules are code: change them through a reviewed proposal; the radar rewrites this file in canonical\n"
    "# form (rules sorted by id, fixed field order), so hand edits should keep that form: `radar rules check`.\n"
)


def _rule_dict(rule: Rule) -> dict[str, Any]:
    match: dict[str, Any] = {"include": {lang: list(ps) for lang, ps in sorted(rule.match.include.items())}}
    if rule.match.exclude:
        match["exclude"] = {lang: list(ps) for lang, ps in sorted(rule.match.exclude.items())}
    action: dict[str, Any] = {"type": rule.action.type}
    if rule.action.required_documents:
        action["required_documents"] = list(rule.action.required_documents)
    out: dict[str, Any] = {
        "id": rule.id,
        "title": rule.title,
        "policy_class": rule.policy_class,
        "markets": _Flow(rule.markets),
        "categories": _Flow(rule.categories),
        "match": match,
        "action": action,
        "legal_basis": list(rule.legal_basis),
        "effective_date": rule.effective_date,
    }
    if rule.references:
        out["references"] = list(rule.references)
    if rule.notes:
        out["notes"] = rule.notes
    return out


def dump_rules(ruleset: RuleSet | Iterable[Rule]) -> str:
    """The policy as canonical YAML: rules sorted by id, fields in a fixed order, one phrase per line.

    Loading the output and dumping it again gives the same text, so diffs show only real changes.
    """
    if isinstance(ruleset, RuleSet):
        version, rules = ruleset.version, ruleset.rules
    else:
        version, rules = 1, list(ruleset)
    data = {"version": version, "rules": [_rule_dict(r) for r in sorted(rules, key=lambda r: r.id)]}
    body = yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=10_000, indent=2
    )
    # A blank line between rules keeps hunks in a diff anchored to one rule.
    body = body.replace("\n- id: ", "\n\n- id: ")
    return _HEADER + body


def write_rules(path: str | Path, text: str, *, validate: bool = True, keep_history: bool = True) -> Path | None:
    """Replace the policy file with ``text`` atomically; returns where the previous version was kept.

    The text is validated first (a broken policy is never written). It goes to a temporary file in the
    same folder, is fsynced and renamed over ``path``; the previous version is copied first to
    ``history/<name>.<UTC timestamp>.yml`` beside it. A crash at any point leaves either the old or the
    new file in place, never a half-written one.
    """
    path = Path(path)
    if validate:
        parse_rules(text, str(path))
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    kept: Path | None = None
    if keep_history and path.exists():
        history = directory / HISTORY_DIR
        history.mkdir(exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        kept = history / f"{path.stem}.{stamp}{path.suffix}"
        counter = 1
        while kept.exists():
            kept = history / f"{path.stem}.{stamp}-{counter}{path.suffix}"
            counter += 1
        shutil.copy2(path, kept)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # Make the rename itself durable; not every platform lets a directory be opened.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return kept
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("wrote %s%s", path, f" (previous version kept as {kept})" if kept else "")
    return kept
