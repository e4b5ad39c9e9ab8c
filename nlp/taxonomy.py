"""The taxonomy: dotted ids, names and source-label crosswalks, loaded from config/taxonomy/ (the words for
the text matchers are term patterns: see nlp/terms.py)."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radar.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_DIRECTORY = Path(__file__).resolve().parents[1] / "config" / "taxonomy"

PUBLISHERS_FILE = "publishers.yml"

ANY_PUBLISHER = "any"
"""Crosswalk key whose entries apply to every publisher (country names are written alike everywhere)."""

# Language codes a term, name or cue may be filed under: the EU's 24 official languages, the EEA/UK/CH
# ones, and the languages of the other jurisdictions the radar watches or sees as origins. A code
# outside this list is almost always a typo ("ger", "uk", "en-GB"), so it fails the load.
KNOWN_LANGUAGES = frozenset(
    "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv "
    "is no nb nn lb rm ar he tr zh ja ko hi vi th id ms tl ur bn ru uk be sr mk sq bs af".split()
)

ROLES = ("notified_by", "origin", "sold_in", "publisher")

ID_PATTERN = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9][a-z0-9_]*)+$")
PUBLISHER_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

def normalize_label(label: str) -> str:
    """The form crosswalk labels are compared in: NFKC, casefolded, one space, no trailing dot or comma."""
    text = unicodedata.normalize("NFKC", label).replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.casefold().split()).strip(" .,;:")


# --------------------------------------------------------------------------------------------------
# YAML reading: duplicate keys are an error, never a silent overwrite (a duplicated id would otherwise
# quietly replace the first definition).


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key = key
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise _DuplicateKeyError(key, key_node.start_mark.line + 1)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); it must be a UTF-8 YAML file") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except _DuplicateKeyError as exc:
        raise ConfigError(
            f"{path}: duplicate id or key {exc.key!r} (line {exc.line}); each id may be defined once, "
            "so merge the two entries or rename one"
        ) from exc
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where} ({problem}); fix the syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a YAML mapping at the top (axis:, prefix:, nodes:), got {type(data).__name__}"
        )
    return data


# --------------------------------------------------------------------------------------------------
# File models. extra="forbid" everywhere: a typo'd field is an error, not a silently ignored key.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contains(_Strict):
    contains: str
    """Matches a label that contains this text (compared case-insensitively, whitespace collapsed)."""


class Regex(_Strict):
    regex: str
    """Matches a label this Python regular expression finds anywhere in (case-insensitive)."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"regex {value!r} does not compile: {exc}") from exc
        return value


CrosswalkEntry = Union[str, Contains, Regex]


def _check_languages(value: dict[str, Any], what: str) -> dict[str, Any]:
    for lang in value:
        if lang not in KNOWN_LANGUAGES:
            raise ValueError(
                f"unknown language code {lang!r} in {what}; use a two-letter ISO 639-1 code "
                f"such as en, fr, de (known: {', '.join(sorted(KNOWN_LANGUAGES))})"
            )
    return value


def _check_publishers(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        if not PUBLISHER_KEY_PATTERN.match(key):
            raise ValueError(f"crosswalk key {key!r} is not a publisher key (lower_snake_case, e.g. safety_gate)")
    return value


class Node(_Strict):
    """What every taxonomy node has, whatever its axis."""

    id: str
    """The dotted id, e.g. ``cat.toys.magnetic``; it is the node's key in the file."""
    label: str
    """The English display name."""
    description: str = ""
    """One or two sentences for reviewers: what belongs here and what does not."""
    crosswalk: dict[str, list[CrosswalkEntry]] = Field(default_factory=dict)
    """Publisher key → that publisher's labels for this node (exact by default; contains: / regex:)."""

    axis: ClassVar[str] = ""

    @field_validator("crosswalk")
    @classmethod
    def _crosswalk_keys(cls, value: dict[str, list[CrosswalkEntry]]) -> dict[str, list[CrosswalkEntry]]:
        return _check_publishers(value)

    @property
    def parent(self) -> str | None:
        """The id one level up, or None for a top-level node (``cat.toys`` has no parent node)."""
        head, _, _ = self.id.rpartition(".")
        return head if "." in head else None

    @property
    def depth(self) -> int:
        return self.id.count(".")


class CategoryNode(Node):
    axis: ClassVar[str] = "category"
    google_product_ids: list[int] = Field(default_factory=list)
    """Google Product Taxonomy ids this category covers (the 2021-09-21 en-US list)."""
    absorbs: int = Field(default=0, ge=0, le=5)
    """A word of this node swallows other categories' words up to this many tokens after it:
    "Toy Police Cars" is a toy, not a car (the toy word modifies the product that follows)."""
    typical_hazards: list[str] = Field(default_factory=list)
    """Hazard ids a notice about this category is inferred to have when its text names no hazard (domain
    knowledge: motor vehicles → injuries, cosmetics → chemical); the nodes below inherit them unless they
    name their own. An inference, not a reading: it scores lower and its evidence is the category's span."""


class HazardNode(Node):
    axis: ClassVar[str] = "hazard"
    risk: float = Field(default=0.5, ge=0.0, le=1.0)
    """How bad the typical harm is, 0..1 (death or lasting injury near 1, a compliance defect near 0):
    the starting point of a notice's risk score when this hazard is found."""


class SubstanceNode(Node):
    axis: ClassVar[str] = "substance"
    cas: list[str] = Field(default_factory=list)
    """CAS registry numbers ("7439-92-1")."""
    hazard: str = "hazard.chemical"
    """The hazard id a finding of this substance implies."""
    banned: bool = False
    """Banned outright in the products it is notified in (BMHCA in cosmetics, asbestos, SCCPs): a
    serious-risk notice naming it points at the prohibited policy class."""

    @field_validator("cas")
    @classmethod
    def _cas(cls, value: list[str]) -> list[str]:
        for number in value:
            if not re.fullmatch(r"\d{2,7}-\d{2}-\d", number):
                raise ValueError(f"cas {number!r} is not a CAS registry number like 7439-92-1")
        return value


class Regulator(_Strict):
    name: str
    acronym: str = ""
    scope: str = ""
    """What it regulates, in a few words (e.g. "consumer products", "food", "medicines")."""
    url: str = ""


class JurisdictionNode(Node):
    axis: ClassVar[str] = "jurisdiction"
    iso2: str | None = None
    """ISO 3166-1 alpha-2 code (GB for the United Kingdom); None for groups like the EU."""
    iso3: str | None = None
    market_codes: list[str] = Field(default_factory=list)
    """Other codes marketplaces use for this market (UK for GB, EL for Greece, EU for the Union)."""
    names: dict[str, list[str]] = Field(default_factory=dict)
    """Language code → the jurisdiction's name(s) in that language (English, native, French, German...).
    Names match source labels case-insensitively and text case-sensitively (as written or ALL CAPS)."""
    aliases: list[str] = Field(default_factory=list)
    """Other spellings sources use ("Peoples Republic of China", "P.R.C."); matched like names."""
    not_in_text: list[str] = Field(default_factory=list)
    """Names that are too ambiguous to look for in running text ("Turkey" the bird, "Jersey" the shirt)."""
    regulators: list[Regulator] = Field(default_factory=list)

    @field_validator("names", mode="before")
    @classmethod
    def _names_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {lang: [names] if isinstance(names, str) else names for lang, names in value.items()}
        return value

    @field_validator("names")
    @classmethod
    def _name_languages(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_languages(value, "names")

    @field_validator("iso2")
    @classmethod
    def _iso2(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError(f"iso2 {value!r} must be two capital letters (ISO 3166-1 alpha-2)")
        return value

    @field_validator("iso3")
    @classmethod
    def _iso3(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError(f"iso3 {value!r} must be three capital letters (ISO 3166-1 alpha-3)")
        return value

    def all_names(self) -> Iterator[tuple[str | None, str]]:
        """(language or None, spelling) for every name and alias."""
        for lang, names in self.names.items():
            for name in names:
                yield lang, name
        for alias in self.aliases:
            yield None, alias


class PolicyRule(_Strict):
    """When the pipeline derives a policy class: every condition given must hold (an empty one is ignored)."""

    categories: list[str] = Field(default_factory=list)
    """Category ids; a category finding at or below one of them matches."""
    hazards: list[str] = Field(default_factory=list)
    """Hazard ids; a hazard finding at or below one of them matches."""
    substances: list[str] = Field(default_factory=list)
    """Substance ids, or "banned" for any substance marked banned."""
    legal_refs: list[str] = Field(default_factory=list)
    """Legal references as the pipeline writes them ("Regulation (EU) 2021/821"); a trailing * matches a prefix."""
    terms: dict[str, list[str]] = Field(default_factory=dict)
    """Language → words in the title or text that signal the class ("counterfeit", "contrefaçon")."""
    min_severity: int | None = None
    """The notice's severity rank (severity.yml, from the source's risk level) must be at least this."""
    sources: list[str] = Field(default_factory=list)
    """Source names or shell-style globs (us_trade_*): notices of these sources match."""
    label_values: dict[str, list[str]] = Field(default_factory=dict)
    """Key of a notice's ``labels`` → values that match, case-insensitively (counterfeit: [yes, true])."""

    @field_validator("terms")
    @classmethod
    def _rule_languages(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_languages(value, "derive.terms")

    @model_validator(mode="after")
    def _not_empty(self) -> PolicyRule:
        if not any((self.categories, self.hazards, self.substances, self.legal_refs, self.terms,
                    self.min_severity is not None, self.sources, self.label_values)):
            raise ValueError("a derive rule needs at least one condition (categories, hazards, terms, ...)")
        return self


class PolicyNode(Node):
    axis: ClassVar[str] = "policy"
    default_action: Literal["block", "restrict", "review", "none"] = "review"
    """What a rule of this class usually does to a listing, before a reviewer says otherwise."""
    derive: list[PolicyRule] = Field(default_factory=list)
    """Rules by which the pipeline assigns this class to a notice (any rule matching is enough)."""


class SeverityNode(Node):
    axis: ClassVar[str] = "severity"
    rank: int
    """Higher is worse; lets signals sort and threshold without knowing the labels."""


NODE_MODELS: dict[str, type[Node]] = {
    model.axis: model for model in (CategoryNode, HazardNode, JurisdictionNode, PolicyNode, SeverityNode, SubstanceNode)
}
PREFIXES = {"category": "cat", "hazard": "hazard", "jurisdiction": "juris", "policy": "policy", "severity": "severity",
            "substance": "substance"}
TERM_AXES = ("category", "hazard", "substance")
"""Axes whose words per language are term patterns (nlp/patterns/terms/<lang>.jsonl, see nlp/terms.py)."""
MOVED_FIELDS = frozenset({"terms", "cue_words", "stop_terms", "cue_nouns"})
"""Fields that once held words in the taxonomy YAML and now live in the term pattern files."""


class AxisFile(_Strict):
    axis: str
    """Which axis this file defines: category, hazard, jurisdiction, policy or severity."""
    prefix: str
    """The first segment every id in this file starts with (cat, hazard, juris, policy, severity)."""
    ignore: dict[str, list[str]] = Field(default_factory=dict)
    """Publisher key → labels that mean "no value" ("Unknown", "Other"): neither mapped nor counted."""
    label_keys: list[str] = Field(default_factory=list)
    """Keys of a notice's ``labels`` whose values are this axis's labels (Safety Gate's risk_level)."""
    role_cues: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    """Jurisdictions only: role → language → words just before a country name that give its role."""
    role_articles: dict[str, list[str]] = Field(default_factory=dict)
    """Jurisdictions only: language → articles allowed between a cue and the name ("made in the")."""
    label_roles: dict[str, str] = Field(default_factory=dict)
    """Jurisdictions only: key in a notice's ``labels`` → the role of the countries it holds."""
    nodes: dict[str, dict[str, Any]]

    @field_validator("ignore")
    @classmethod
    def _ignore_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_publishers(value)

    @field_validator("role_cues")
    @classmethod
    def _cue_roles(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        for role, by_lang in value.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} in role_cues; use one of {', '.join(ROLES)}")
            _check_languages(by_lang, f"role_cues.{role}")
        return value

    @field_validator("role_articles")
    @classmethod
    def _article_languages(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_languages(value, "role_articles")

    @field_validator("label_roles")
    @classmethod
    def _label_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for key, role in value.items():
            if role not in ROLES:
                raise ValueError(f"label_roles.{key}: unknown role {role!r}; use one of {', '.join(ROLES)}")
        return value

    @model_validator(mode="after")
    def _axis_known(self) -> AxisFile:
        if self.axis not in NODE_MODELS:
            raise ValueError(f"unknown axis {self.axis!r}; use one of {', '.join(NODE_MODELS)}")
        if self.prefix != PREFIXES[self.axis]:
            raise ValueError(f"axis {self.axis} uses the id prefix {PREFIXES[self.axis]!r}, not {self.prefix!r}")
        if self.axis != "jurisdiction" and (self.role_cues or self.label_roles or self.role_articles):
            raise ValueError("role_cues, role_articles and label_roles belong in the jurisdiction file only")
        return self


class Publisher(_Strict):
    key: str
    name: str
    """Who publishes the labels, e.g. "European Commission — Safety Gate"."""
    jurisdiction: str | None = None
    """The jurisdiction id the publisher speaks for (its notices' ``publisher`` role)."""
    sources: list[str] = Field(default_factory=list)
    """Source names (config/sources/<name>.yml stems) or shell-style globs whose labels this crosswalk reads."""


class PublishersFile(_Strict):
    publishers: dict[str, dict[str, Any]]


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    kind: Literal["contains", "regex"]
    needle: str
    compiled: re.Pattern[str] | None
    target: str

    def matches(self, label: str, normalized: str) -> bool:
        if self.compiled is not None:
            return self.compiled.search(label) is not None
        return self.needle in normalized


def _format_validation(path: Path, exc: ValidationError, node_id: str | None = None) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        # Union members show up in the location ("str", "Contains"); they say nothing to the editor.
        loc = [part for part in loc if part not in ("str", "Contains", "Regex", "function-after[_compiles(), Regex]")]
        where = ".".join(loc)
        if err["type"] == "extra_forbidden" and loc and loc[-1] in MOVED_FIELDS:
            problems.append(f"field {where!r}: words are term patterns now, one JSON line each in "
                            'nlp/patterns/terms/<lang>.jsonl ({"label": ..., "pattern": ..., "id": ...}); move them there')
        elif err["type"] == "extra_forbidden":
            problems.append(f"unknown field {where!r} (a typo? remove or rename it)")
        elif err["type"] == "missing":
            problems.append(f"missing required field {where!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if isinstance(err.get("input"), bool):
                msg += " (YAML reads a bare NO, yes, on or off as true/false: quote it)"
            problems.append(f"{where}: {msg}" if where else msg)
    # Collapse the repeated per-union-member messages pydantic emits for one bad crosswalk entry.
    unique = list(dict.fromkeys(problems))
    subject = f"{path}: node {node_id!r}" if node_id else str(path)
    return f"{subject}: " + "; ".join(unique)


class Taxonomy:
    """Every axis's nodes and the crosswalks from each publisher's labels."""

    def __init__(
        self,
        directory: Path,
        files: dict[str, AxisFile],
        nodes: dict[str, Node],
        publishers: dict[str, Publisher],
        fingerprint: str,
    ) -> None:
        self.directory = directory
        self.fingerprint = fingerprint
        """SHA-256 over the files' bytes: part of the pipeline version, so re-classification is traceable."""
        self._files = files
        self._nodes = nodes
        self.publishers = publishers
        self._by_axis: dict[str, list[Node]] = {}
        self._children: dict[str, list[str]] = {}
        for node in nodes.values():
            self._by_axis.setdefault(node.axis, []).append(node)
            if node.parent:
                self._children.setdefault(node.parent, []).append(node.id)
        self._exact: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._patterns: dict[tuple[str, str], list[_Pattern]] = {}
        self._ignored: dict[tuple[str, str], set[str]] = {}
        self._markets: dict[str, str] = {}
        self._source_publisher: dict[str, str | None] = {}
        self._lookup_cache: dict[tuple[str, str, str], list[str] | None] = {}
        self._build_indexes()

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path | str | None = None) -> Taxonomy:
        """Read and validate every ``*.yml`` in ``directory`` (default: <repo>/config/taxonomy)."""
        directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
        if not directory.is_dir():
            raise ConfigError(f"{directory}: taxonomy directory not found; pass the folder holding categories.yml etc.")
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        if not paths:
            raise ConfigError(f"{directory}: no taxonomy files (*.yml) found")
        digest = hashlib.sha256()
        files: dict[str, AxisFile] = {}
        nodes: dict[str, Node] = {}
        origin: dict[str, Path] = {}
        publishers: dict[str, Publisher] = {}
        for path in paths:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
            data = _read_yaml(path)
            if path.name == PUBLISHERS_FILE:
                publishers = cls._load_publishers(path, data)
                continue
            try:
                axis_file = AxisFile.model_validate(data)
            except ValidationError as exc:
                raise ConfigError(_format_validation(path, exc)) from None
            if axis_file.axis in files:
                raise ConfigError(
                    f"{path}: axis {axis_file.axis!r} is already defined in another file; keep one file per axis"
                )
            files[axis_file.axis] = axis_file
            model = NODE_MODELS[axis_file.axis]
            for node_id, body in axis_file.nodes.items():
                if not isinstance(node_id, str) or not ID_PATTERN.match(node_id):
                    raise ConfigError(
                        f"{path}: malformed id {node_id!r}; ids are dotted lower_snake_case segments "
                        f"starting with {axis_file.prefix!r}, e.g. {axis_file.prefix}.something"
                    )
                if not node_id.startswith(axis_file.prefix + "."):
                    raise ConfigError(
                        f"{path}: id {node_id!r} must start with {axis_file.prefix + '.'!r} like every id of the "
                        f"{axis_file.axis} axis"
                    )
                if node_id in nodes:
                    raise ConfigError(f"{path}: duplicate id {node_id!r}, already defined in {origin[node_id]}")
                if body is None:
                    body = {}
                if not isinstance(body, dict):
                    raise ConfigError(f"{path}: node {node_id!r} must be a mapping (label:, crosswalk:, ...)")
                try:
                    nodes[node_id] = model.model_validate({**body, "id": node_id})
                except ValidationError as exc:
                    raise ConfigError(_format_validation(path, exc, node_id)) from None
                origin[node_id] = path
        cls._check_structure(nodes, origin, files, publishers, directory)
        return cls(directory, files, nodes, publishers, digest.hexdigest())

    @staticmethod
    def _load_publishers(path: Path, data: dict[str, Any]) -> dict[str, Publisher]:
        try:
            parsed = PublishersFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation(path, exc)) from None
        publishers = {}
        for key, body in parsed.publishers.items():
            if not PUBLISHER_KEY_PATTERN.match(key) or key == ANY_PUBLISHER:
                raise ConfigError(f"{path}: publisher key {key!r} must be lower_snake_case and not {ANY_PUBLISHER!r}")
            try:
                publishers[key] = Publisher.model_validate({**(body or {}), "key": key})
            except ValidationError as exc:
                raise ConfigError(_format_validation(path, exc, key)) from None
        return publishers

    @staticmethod
    def _check_structure(
        nodes: dict[str, Node],
        origin: dict[str, Path],
        files: dict[str, AxisFile],
        publishers: dict[str, Publisher],
        directory: Path,
    ) -> None:
        known_publishers = set(publishers) | {ANY_PUBLISHER}
        for node in nodes.values():
            path = origin[node.id]
            if node.parent and node.parent not in nodes:
                raise ConfigError(
                    f"{path}: node {node.id!r} has parent {node.parent!r}, which is not defined; "
                    f"add {node.parent!r} to the file or move the node under an existing one"
                )
            for key in node.crosswalk:
                if key not in known_publishers:
                    raise ConfigError(
                        f"{path}: node {node.id!r} has a crosswalk for unknown publisher {key!r}; "
                        f"add it to {directory / PUBLISHERS_FILE} or use one of {', '.join(sorted(known_publishers))}"
                    )
        for axis, axis_file in files.items():
            for key in axis_file.ignore:
                if key not in known_publishers:
                    raise ConfigError(
                        f"{directory}: the {axis} file ignores labels of unknown publisher {key!r}; "
                        f"add it to {PUBLISHERS_FILE}"
                    )
        for publisher in publishers.values():
            if publisher.jurisdiction and publisher.jurisdiction not in nodes:
                raise ConfigError(
                    f"{directory / PUBLISHERS_FILE}: publisher {publisher.key!r} names jurisdiction "
                    f"{publisher.jurisdiction!r}, which jurisdictions.yml does not define"
                )
        for node in nodes.values():
            if isinstance(node, SubstanceNode) and node.hazard not in nodes:
                raise ConfigError(f"{origin[node.id]}: substance {node.id!r} names hazard {node.hazard!r}, "
                                  "which hazards.yml does not define")
            if isinstance(node, CategoryNode):
                for ref in node.typical_hazards:
                    if not isinstance(nodes.get(ref), HazardNode):
                        raise ConfigError(f"{origin[node.id]}: category {node.id!r} names typical hazard {ref!r}, "
                                          "which is not a hazard id of hazards.yml; fix the id or add the node")
            if isinstance(node, PolicyNode):
                for i, rule in enumerate(node.derive):
                    for ref in [*rule.categories, *rule.hazards, *(s for s in rule.substances if s != "banned")]:
                        if ref not in nodes:
                            raise ConfigError(
                                f"{origin[node.id]}: node {node.id!r} derive rule {i + 1} names {ref!r}, which is "
                                "not a defined id; fix the id or add the node"
                            )
        seen_codes: dict[str, str] = {}
        for node in nodes.values():
            if isinstance(node, JurisdictionNode):
                for code in filter(None, [node.iso2, node.iso3, *node.market_codes]):
                    other = seen_codes.setdefault(code.upper(), node.id)
                    if other != node.id:
                        raise ConfigError(
                            f"{origin[node.id]}: code {code!r} of {node.id!r} is also used by {other!r}; "
                            "a market code must name one jurisdiction"
                        )

    # ---- indexes -------------------------------------------------------------------------------

    def _build_indexes(self) -> None:
        for axis, axis_file in self._files.items():
            for publisher, labels in axis_file.ignore.items():
                self._ignored.setdefault((axis, publisher), set()).update(normalize_label(x) for x in labels)
        for node in self._nodes.values():
            for publisher, entries in node.crosswalk.items():
                for entry in entries:
                    self._add_entry(node.axis, publisher, entry, node.id)
            if isinstance(node, JurisdictionNode):
                # Names, aliases and codes are how every publisher writes a country, so they are
                # crosswalk entries for all of them.
                for _, name in node.all_names():
                    self._add_entry(node.axis, ANY_PUBLISHER, name, node.id)
                for code in filter(None, [node.iso2, node.iso3, *node.market_codes]):
                    self._add_entry(node.axis, ANY_PUBLISHER, code, node.id)
                    self._markets[code.upper()] = node.id

    def _add_entry(self, axis: str, publisher: str, entry: CrosswalkEntry, target: str) -> None:
        if isinstance(entry, str):
            targets = self._exact.setdefault((axis, publisher), {}).setdefault(normalize_label(entry), [])
            if target not in targets:
                targets.append(target)
        elif isinstance(entry, Contains):
            self._patterns.setdefault((axis, publisher), []).append(
                _Pattern("contains", normalize_label(entry.contains), None, target)
            )
        else:
            self._patterns.setdefault((axis, publisher), []).append(
                _Pattern("regex", entry.regex, re.compile(entry.regex, re.IGNORECASE), target)
            )

    # ---- queries -------------------------------------------------------------------------------

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(self._by_axis)

    def axis(self, name: str) -> list[Node]:
        """The nodes of one axis, in file order."""
        if name not in NODE_MODELS:
            raise KeyError(f"unknown axis {name!r}; use one of {', '.join(NODE_MODELS)}")
        return list(self._by_axis.get(name, []))

    def axis_file(self, name: str) -> AxisFile:
        return self._files[name]

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def __getitem__(self, node_id: str) -> Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown taxonomy id {node_id!r}") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def children(self, node_id: str) -> list[str]:
        return list(self._children.get(node_id, []))

    def descendants(self, node_id: str) -> list[str]:
        """The id itself and every id below it, depth first in file order."""
        self[node_id]  # raise KeyError for an unknown id rather than return a one-element list
        out, stack = [], [node_id]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(self._children.get(current, [])))
        return out

    def ancestors(self, node_id: str) -> list[str]:
        """Parent first, up to the top-level node; empty for a top-level node."""
        out, current = [], self[node_id].parent
        while current:
            out.append(current)
            current = self._nodes[current].parent
        return out

    def jurisdiction_for_market(self, code: str | None) -> str | None:
        """The jurisdiction id for a marketplace market code (ISO 3166-1, case-insensitive; UK, EL, EU too)."""
        if not code:
            return None
        return self._markets.get(code.strip().upper())

    def publisher_for_source(self, source: str | None) -> str | None:
        """The crosswalk key for a source name: its publisher's key, or None when no publisher claims it."""
        if not source:
            return None
        if source in self._source_publisher:
            return self._source_publisher[source]
        found = source if source in self.publishers else None
        if found is None:
            for publisher in self.publishers.values():
                if any(fnmatch.fnmatchcase(source, pattern) for pattern in publisher.sources):
                    found = publisher.key
                    break
        self._source_publisher[source] = found
        return found

    def lookup(self, axis: str, source: str | None, label: str) -> list[str] | None:
        """Ids a source label maps to; ``[]`` for a label known to mean nothing; None when unmapped.

        Exact entries (the publisher's, then those for any publisher) win over contains:/regex: ones,
        so a broad pattern never overrides a label someone mapped by hand.
        """
        key = (axis, source or "", label)
        if key in self._lookup_cache:
            return self._lookup_cache[key]
        publisher = self.publisher_for_source(source)
        keys = [publisher, ANY_PUBLISHER] if publisher else [ANY_PUBLISHER]
        normalized = normalize_label(label)
        result: list[str] | None = None
        if not normalized or any(normalized in self._ignored.get((axis, k), ()) for k in keys):
            result = []
        else:
            for k in keys:
                hit = self._exact.get((axis, k), {}).get(normalized)
                if hit:
                    result = list(hit)
                    break
            if result is None:
                stripped = label.strip()
                hits = [
                    p.target
                    for k in keys
                    for p in self._patterns.get((axis, k), ())
                    if p.matches(stripped, normalized)
                ]
                if hits:
                    result = list(dict.fromkeys(hits))
        if len(self._lookup_cache) < 200_000:
            self._lookup_cache[key] = result
        return result

    def crosswalk(self, axis: str, source: str | None, label: str) -> list[str]:
        """Ids a source's own label maps to (empty when it maps to nothing); see :meth:`lookup`."""
        return self.lookup(axis, source, label) or []

    def crosswalk_entries(self) -> Iterator[tuple[str, str, str, str]]:
        """(axis, publisher, entry as written, target id) for every crosswalk entry, for checks and docs."""
        for (axis, publisher), table in self._exact.items():
            for label, targets in table.items():
                for target in targets:
                    yield axis, publisher, label, target
        for (axis, publisher), patterns in self._patterns.items():
            for p in patterns:
                yield axis, publisher, f"{p.kind}:{p.needle}", p.target

    # ---- for the text matchers and the derived findings -------------------------------------

    def absorbing(self, axis: str) -> dict[str, int]:
        """Node id → how many tokens after its words other nodes' words are swallowed (``absorbs``)."""
        return {n.id: n.absorbs for n in self._by_axis.get(axis, []) if getattr(n, "absorbs", 0)}

    def regulators(self) -> Iterator[tuple[str, str, Regulator]]:
        """(regulator id, jurisdiction id, regulator) for every regulator in jurisdictions.yml.

        The id is ``reg.`` + the jurisdiction id's tail + the acronym (or the name's first word),
        lower_snake_case: ``reg.eu.de.baua``, ``reg.uk.opss``.
        """
        for node in self._by_axis.get("jurisdiction", []):
            if isinstance(node, JurisdictionNode):
                for regulator in node.regulators:
                    key = regulator.acronym or regulator.name.split("—")[0]
                    slug = re.sub(r"[^a-z0-9]+", "_", unicodedata.normalize("NFKD", key).encode("ascii", "ignore")
                                  .decode().lower()).strip("_")
                    yield f"reg.{node.id.removeprefix('juris.')}.{slug}", node.id, regulator

    def jurisdiction_names(self, languages: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
        """(language, name, id) for the jurisdiction names and aliases worth looking for in text, in these
        languages (``None``: every language); aliases are written alike everywhere and come with language ""."""
        wanted = None if languages is None else set(languages)
        out: list[tuple[str, str, str]] = []
        for node in self._by_axis.get("jurisdiction", []):
            if isinstance(node, JurisdictionNode):
                skip = {normalize_label(n) for n in node.not_in_text}
                for lang, name in node.all_names():
                    if normalize_label(name) in skip:
                        continue
                    if lang is None or wanted is None or lang in wanted:
                        out.append((lang or "", name, node.id))
        return out

    def typical_hazards(self, category: str) -> list[str]:
        """The hazards inferred for a category: its own ``typical_hazards``, else its nearest ancestor's."""
        for node_id in (category, *self.ancestors(category)):
            node = self._nodes[node_id]
            if isinstance(node, CategoryNode) and node.typical_hazards:
                return list(node.typical_hazards)
        return []

    def label_keys(self, axis: str) -> list[str]:
        """Keys of a notice's ``labels`` holding labels of this axis (see each file's ``label_keys``)."""
        file = self._files.get(axis)
        return list(file.label_keys) if file else []

    @property
    def role_cues(self) -> dict[str, dict[str, list[str]]]:
        file = self._files.get("jurisdiction")
        return file.role_cues if file else {}

    @property
    def role_articles(self) -> dict[str, list[str]]:
        file = self._files.get("jurisdiction")
        return file.role_articles if file else {}

    @property
    def label_roles(self) -> dict[str, str]:
        file = self._files.get("jurisdiction")
        return file.label_roles if file else {}


_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], Taxonomy] = {}


def load_cached(directory: Path | str | None = None) -> Taxonomy:
    """:meth:`Taxonomy.load`, reused while no file in the directory changed (spaCy factories call this)."""
    directory = Path(directory) if directory is not None else DEFAULT_DIRECTORY
    try:
        files = [p for p in directory.iterdir() if p.suffix in (".yml", ".yaml")]
        stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files))
    except OSError:
        return Taxonomy.load(directory)  # let load() raise its own, clearer error
    key = (str(directory.resolve()), stamp)
    if key not in _CACHE:
        _CACHE.clear()  # one taxonomy in use at a time is the norm; do not grow across test tmp dirs
        _CACHE[key] = Taxonomy.load(directory)
    return _CACHE[key]
