"""The errors Risk Radar raises on purpose; each message names the file, value or source and the fix."""


class RadarError(Exception):
    """Base of every error the CLI reports as a one-line message and a non-zero exit."""


class ConfigError(RadarError):
    """A settings, source, taxonomy or rules file is missing or invalid."""


class SourceError(RadarError):
    """A source failed structurally (not one bad record: the whole run)."""


class StorageError(RadarError):
    """The database is unreachable, or its schema is not the one this code expects."""


class SearchQueryError(RadarError):
    """A search query or filter could not be understood."""
