"""The CLI: --help is the documentation, and the README quotes it; errors are one clear line."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from radar.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_quotes_the_current_help():
    """Each ```text block in the README that starts with `$ radar ... --help` is that command's output."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n\$ (radar[^\n]*?) --help\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md quotes no `radar ... --help` output"
    for command, quoted in blocks:
        assert quoted.strip() == _help(*command.split()[1:]).strip(), f"README's `{command} --help` is out of date"


def test_every_verb_is_in_the_readme():
    text = README.read_text(encoding="utf-8")
    for name in main.list_commands(None):
        assert f"radar {name}" in text, f"README.md does not mention `radar {name}`"


def test_unknown_source_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(main, ["crawl", "no_such_source"])
    assert result.exit_code == 1
    assert "unknown source(s) no_such_source" in result.output
    assert "Traceback" not in result.output


def test_bad_database_url_is_one_clear_line(monkeypatch):
    from radar import settings

    monkeypatch.setenv("RADAR_DATABASE_URL", "nosuchdb://x")
    settings.get_settings.cache_clear()
    result = CliRunner().invoke(main, ["search", "charger"])
    assert result.exit_code == 1
    assert "database URL" in result.output


def test_bad_setting_value_is_named(monkeypatch):
    from radar import settings

    monkeypatch.setenv("RADAR_HTTP_TIMEOUT", "soon")
    settings.get_settings.cache_clear()
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 1
    assert "RADAR_HTTP_TIMEOUT='soon'" in result.output


def test_bad_date_is_refused(sqlite_url):
    result = CliRunner().invoke(main, ["search", "x", "--since", "last week"])
    assert result.exit_code == 2
    assert "not a date like 2024-01-01" in result.output


def test_sources_lists_every_source_as_never_run(sqlite_url):
    result = CliRunner().invoke(main, ["sources", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    names = {row["name"] for row in rows}
    assert {"eu_safety_gate_alerts", "uk_opss_alerts", "us_cpsc_recalls"} <= names
    assert all(row["status"] == "never run" and row["next_run"] for row in rows if row["enabled"])
    assert all(row["attribution"] for row in rows)
