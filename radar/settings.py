"""Settings: declared once in config/settings.toml, overridable by RADAR_<NAME> environment variables."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from radar.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "config"
SETTINGS_FILE = CONFIG_DIR / "settings.toml"


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    default: Any
    help: str
    origin: str  # "default" or the environment variable that set it


def _coerce(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"RADAR_{name.upper()}={raw!r}: expected true or false")
    if isinstance(default, int):
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"RADAR_{name.upper()}={raw!r}: expected a whole number") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"RADAR_{name.upper()}={raw!r}: expected a number") from None
    return raw


class Settings:
    """The settings in force. Attribute access by name; ``describe()`` lists them with help and origin."""

    def __init__(self, declared: dict[str, dict[str, Any]], environ: dict[str, str]) -> None:
        self._items: dict[str, Setting] = {}
        for name, spec in declared.items():
            if "default" not in spec or "help" not in spec:
                raise ConfigError(f"{SETTINGS_FILE}: setting {name!r} needs both default and help")
            env_name = f"RADAR_{name.upper()}"
            if env_name in environ:
                value, origin = _coerce(name, environ[env_name], spec["default"]), env_name
            else:
                value, origin = spec["default"], "default"
            self._items[name] = Setting(name, value, spec["default"], spec["help"], origin)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name].value
        except KeyError:
            raise AttributeError(f"no setting {name!r}; declared settings are in {SETTINGS_FILE}") from None

    def describe(self) -> list[Setting]:
        return list(self._items.values())

    # Derived values: computed here so every module agrees on them.
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'radar.db'}"

    @property
    def sources_path(self) -> Path:
        return Path(self.sources_dir) if self.sources_dir else CONFIG_DIR / "sources"

    @property
    def taxonomy_path(self) -> Path:
        return Path(self.taxonomy_dir) if self.taxonomy_dir else CONFIG_DIR / "taxonomy"

    @property
    def full_user_agent(self) -> str:
        return f"{self.user_agent} contact: {self.contact}" if self.contact else self.user_agent


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    try:
        declared = tomllib.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{SETTINGS_FILE}: {exc}") from exc
    return Settings(declared, dict(os.environ if environ is None else environ))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
