"""`radar digest` (send or preview the weekly digest) and `radar subscriptions` (who receives it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("digest")
@click.option("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the last complete week in the timezone setting).")
@click.option("--preview", "preview_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path),
              help="Write each digest as .eml, .html and .txt files here instead of sending; nothing is recorded as sent.")
@click.option("--subscription", metavar="NAME", help="Only this subscription (name or id); default: every active one.")
@click.option("--retry-interrupted", is_flag=True,
              help="First release deliveries a crashed run left 'sending' (after checking the mail log) so they are sent again.")
def digest(week: str | None, preview_dir: Path | None, subscription: str | None, retry_interrupted: bool) -> None:
    """Send the weekly digest emails, or write previews.

    One email per subscription and recipient, exactly once: re-running sends only what is still
    pending or failed (a refused recipient is retried up to digest_max_attempts runs). SMTP comes from
    the smtp_* settings, the password from the RADAR_SMTP_PASSWORD environment variable.
    """
    from radar import digest as digest_module
    from radar.db import get_engine

    engine = get_engine()
    week = digest_module.week_of(digest_module.parse_week(week)) if week else digest_module.last_complete_week()
    if retry_interrupted and preview_dir is None:
        released = digest_module.retry_interrupted(engine, week)
        click.echo(f"released {released} interrupted deliveries of {week} for sending again", err=True)

    def progress(result) -> None:
        mark = "sent  " if result.status == "sent" else "FAILED"
        click.echo(f"  {mark} {result.subscription} → {result.recipient}{': ' + result.error if result.error else ''}",
                   err=True)

    report = digest_module.send_week(engine, week, preview_dir=preview_dir, subscription=subscription, progress=progress)
    for line in report.lines():
        click.echo(line)
    for path in report.files:
        click.echo(f"  {path}")
    if not report.ok:
        sys.exit(1)


@click.group("subscriptions")
def subscriptions() -> None:
    """Manage who receives the weekly digest.

    A subscription has recipients, markets (ISO codes: DE, FR, UK, EU), categories (taxonomy ids;
    cat.toys includes cat.toys.magnetic), a minimum severity (low, medium, high, serious) and a language.
    """


_SEVERITY = click.Choice(["low", "medium", "high", "serious"], case_sensitive=False)


@subscriptions.command("add")
@click.argument("name")
@click.option("--recipient", "recipients", multiple=True, required=True, help="Email address; repeatable.")
@click.option("--market", "markets", multiple=True, help="Market code (DE, FR, UK, EU); repeatable; none means all.")
@click.option("--category", "categories", multiple=True, help="Category id prefix (cat.toys); repeatable; none means all.")
@click.option("--min-severity", default="medium", show_default=True, type=_SEVERITY,
              help="Leave out notices rated below this.")
@click.option("--language", default="en", show_default=True, help="Language of the digest (ISO 639-1).")
def add(name, recipients, markets, categories, min_severity, language) -> None:
    """Add a subscription."""
    from radar.db import get_engine
    from radar.subscriptions import add_subscription

    row = add_subscription(get_engine(), name, recipients, markets=markets, categories=categories,
                           min_severity=min_severity, language=language)
    click.echo(f"added subscription {row.id} {row.name!r}: {len(row.recipients)} recipient(s)")


@subscriptions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_(as_json: bool) -> None:
    """List subscriptions."""
    from radar.db import get_engine
    from radar.subscriptions import list_subscriptions

    rows = list_subscriptions(get_engine())
    if as_json:
        click.echo(json.dumps([{
            "id": r.id, "name": r.name, "recipients": r.recipients, "markets": r.markets, "categories": r.categories,
            "min_severity": r.min_severity, "language": r.language, "active": r.active,
        } for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no subscriptions; add one with `radar subscriptions add NAME --recipient team@example.org`")
        return
    for r in rows:
        state = "" if r.active else "  (inactive)"
        click.echo(f"{r.id:>4}  {r.name}{state}")
        click.echo(f"      to: {', '.join(r.recipients)}")
        click.echo(f"      markets: {', '.join(r.markets) or 'all'}; categories: {', '.join(r.categories) or 'all'}; "
                   f"severity {r.min_severity}+; language {r.language}")


@subscriptions.command("update")
@click.argument("name")
@click.option("--rename", help="New name.")
@click.option("--recipient", "recipients", multiple=True, help="Replace the recipients with these; repeatable.")
@click.option("--add-recipient", "add_recipients", multiple=True, help="Add a recipient; repeatable.")
@click.option("--remove-recipient", "remove_recipients", multiple=True, help="Remove a recipient; repeatable.")
@click.option("--market", "markets", multiple=True, help="Replace the markets with these; repeatable.")
@click.option("--all-markets", is_flag=True, help="Clear the markets: every market.")
@click.option("--category", "categories", multiple=True, help="Replace the categories with these; repeatable.")
@click.option("--all-categories", is_flag=True, help="Clear the categories: every category.")
@click.option("--min-severity", type=_SEVERITY)
@click.option("--language")
@click.option("--active/--inactive", default=None, help="An inactive subscription receives nothing.")
def update(name, rename, recipients, add_recipients, remove_recipients, markets, all_markets, categories,
           all_categories, min_severity, language, active) -> None:
    """Change a subscription (NAME or id); options not given stay as they are."""
    from radar.db import get_engine
    from radar.subscriptions import update_subscription

    row = update_subscription(
        get_engine(), name, name=rename, recipients=list(recipients) or None, add_recipients=add_recipients,
        remove_recipients=remove_recipients, markets=[] if all_markets else (list(markets) or None),
        categories=[] if all_categories else (list(categories) or None), min_severity=min_severity,
        language=language, active=active,
    )
    click.echo(f"updated subscription {row.id} {row.name!r}")


@subscriptions.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete its delivery history (otherwise a subscription with history is deactivated).")
def remove(name: str, purge: bool) -> None:
    """Remove a subscription (NAME or id)."""
    from radar.db import get_engine
    from radar.subscriptions import remove_subscription

    outcome = remove_subscription(get_engine(), name, purge=purge)
    if outcome == "deactivated":
        click.echo(f"subscription {name!r} has sent digests, so it was deactivated to keep the record; "
                   "--purge deletes it with its history")
    else:
        click.echo(f"removed subscription {name!r}")


COMMANDS = [digest, subscriptions]
