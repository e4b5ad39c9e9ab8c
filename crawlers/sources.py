"""Source metadata: one YAML file per source in ``config/sources/``, validated by one pydantic model."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from radar.errors import ConfigError

log = logging.getLogger(__name__)


class SourceKind(str, Enum):
    recall_database = "recall_database"
    regulator_notice = "regulator_notice"
    legislation = "legislation"
    news = "news"
    trade_control = "trade_control"


class Bounds(BaseModel):
    """How many records a healthy run yields; a run outside them is marked failed."""

    model_config = ConfigDict(extra="forbid")

    min_records: int = Field(1, ge=0)
    """Fewer records than this means the parser or the source broke."""
    max_records: int = Field(100_000, ge=1)
    """More records than this means the source changed or is flooding us."""

    @model_validator(mode="after")
    def _ordered(self) -> "Bounds":
        if self.min_records > self.max_records:
            raise ValueError(f"min_records {self.min_records} is above max_records {self.max_records}")
        return self


class SourceConfig(BaseModel):
    """One source: where it is, what it publishes, how often to read it, and what a healthy run looks like."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
    """File stem and spider name, read as <jurisdiction>_<publisher>_<kind>, e.g. uk_opss_alerts."""
    title: str
    """Human name shown on pages and in the digest."""
    publisher: str
    """The organisation that publishes the source."""
    jurisdiction: str = Field(pattern=r"^juris\.[a-z0-9_.]+$")
    """Taxonomy id of the jurisdiction the publisher speaks for, e.g. juris.uk or juris.eu."""
    kind: SourceKind
    """recall_database, regulator_notice, legislation, news or trade_control."""
    url: str = Field(pattern=r"^https?://")
    """The entry point the spider starts from (feed, API or listing)."""
    urls: dict[str, str] = Field(default_factory=dict)
    """Further named endpoints the spider uses (detail API, second feed)."""
    format: str
    """What the entry point serves: atom, rss, json, xml, html."""
    language: str = "en"
    """ISO 639-1 code of the language the source writes in."""
    schedule: str = "0 6 * * *"
    """Cron expression (minute hour day month weekday) for the scheduler."""
    licence: str
    """Terms under which the content is reused."""
    attribution: str
    """Credit line shown wherever the source's notices are shown."""
    bounds: Bounds = Field(default_factory=Bounds)
    """Record-count bounds of a healthy run."""
    enabled: bool = True
    """Disabled sources are listed but never crawled."""
    max_pages: int = Field(50, ge=1)
    """Upper bound on listing pages a run follows, so a paging loop cannot run away."""
    allowed_domains: list[str] | None = None
    """Hosts the spider may fetch from (redirects elsewhere are refused); default: the hosts of url and urls; [] allows any."""
    crawl_permitted: bool = True
    """False when the publisher's terms or robots.txt forbid automated crawling: the source is listed, never crawled."""
    refusal: str = ""
    """Why crawling is not permitted, shown when the source is refused."""

    def domains(self) -> list[str]:
        """The hosts offsite filtering allows for this source ([] means any host)."""
        if self.allowed_domains is not None:
            return list(self.allowed_domains)
        hosts = []
        for url in [self.url, *self.urls.values()]:
            host = urlsplit(url).hostname
            if host and host not in hosts:
                hosts.append(host)
        return hosts

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from radar.jobs import cron_trigger

        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"schedule {value!r} is not a valid cron expression (minute hour day month weekday): {exc}") from None
        return value


def default_sources_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "config" / "sources"


def load_source(path: Path) -> SourceConfig:
    """Read and validate one source file; a bad file raises ConfigError naming the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of source fields, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name {data['name']!r} must equal the file name {path.stem!r}")
    try:
        return SourceConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_sources(directory: Path | None = None) -> dict[str, SourceConfig]:
    """Every source in the directory, by name. The first invalid file stops the load with its message."""
    directory = directory or default_sources_dir()
    if not directory.is_dir():
        raise ConfigError(f"sources directory {directory} does not exist")
    sources = {}
    for path in sorted(directory.glob("*.yml")):
        source = load_source(path)
        sources[source.name] = source
    return sources
