"""Listing impact of a stored proposal: run the impact estimate and keep it as an ImpactEstimate row.

The estimate itself is :func:`radar.impact.estimate_impact`: the proposal's rule against the policy
in force, over a catalogue (exact within the budget, a stratified sample with a 95 % interval beyond).
Without a catalogue the generated demo catalogue (``<data_dir>/demo_catalogue.csv``) is used, made on
first use, and the row says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from radar.errors import RadarError
from radar.models import ImpactEstimate, Proposal

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 2_000_000
DEMO_CATALOGUE = "demo_catalogue.csv"


def default_budget() -> int:
    from radar.settings import get_settings

    return int(getattr(get_settings(), "impact_budget", DEFAULT_BUDGET))


def demo_catalogue() -> Path:
    """The demo catalogue in the data folder, generated the first time it is asked for."""
    from radar.democatalogue import generate_demo_catalogue
    from radar.settings import get_settings

    path = get_settings().data_path / DEMO_CATALOGUE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("generating the demo catalogue at %s", path)
        generate_demo_catalogue(path)
    return path


def default_catalogue() -> Path:
    """The ``impact_catalogue`` setting, else the demo catalogue."""
    from radar.settings import get_settings

    configured = get_settings().impact_catalogue
    return Path(configured).expanduser() if configured else demo_catalogue()


def run_impact(engine: Engine, proposal_id: int, catalogue: Any = None, *, budget: int | None = None,
               policy: str | Path | None = None, examples: int = 20, seed: int = 0, table: str | None = None) -> ImpactEstimate:
    """Estimate how many listings a proposal would hit and store the estimate; returns the stored row."""
    from pydantic import ValidationError

    from radar.drafting import policy_path
    from radar.impact import estimate_impact
    from radar.rules import Rule, load_rules
    from radar.settings import get_settings

    with Session(engine, expire_on_commit=False) as session:
        proposal = session.get(Proposal, proposal_id)
        if proposal is None:
            raise RadarError(f"no proposal {proposal_id}; `radar review list` shows the proposals")
    try:
        rule = Rule.model_validate(proposal.rule)
    except ValidationError as exc:
        raise RadarError(f"proposal {proposal_id}: its stored rule is not valid ({exc.errors()[0]['msg']})") from None
    current = load_rules(policy or policy_path()).rules
    if catalogue is None:
        catalogue = default_catalogue()
        label = str(catalogue) if get_settings().impact_catalogue else f"demo catalogue {catalogue}"
    else:
        label = str(catalogue)
    if table and isinstance(catalogue, (str, Path)):
        from radar.catalogue import open_catalogue

        catalogue = open_catalogue(catalogue, table=table)
        label = f"{label} table {table}"
    budget = default_budget() if budget is None else int(budget)
    estimate = estimate_impact(rule, current, catalogue, budget=budget, examples=examples, seed=seed)
    details = estimate.to_dict()
    details["proposal_kind"] = proposal.kind
    details["rule_id"] = proposal.rule_id
    details["budget"] = budget
    row = ImpactEstimate(
        proposal_id=proposal.id, catalogue=label, listings_scanned=estimate.listings_scanned, hits=estimate.hits,
        already_hit=estimate.already_hit, newly_hit=estimate.newly_hit, exact=estimate.exact, method=estimate.method,
        hits_low=None if estimate.exact else float(estimate.hits_ci[0]),
        hits_high=None if estimate.exact else float(estimate.hits_ci[1]),
        details=_jsonable(details),
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    log.info("impact of proposal %s on %s: %d hits (%d new), %s", proposal.id, label, row.hits, row.newly_hit, row.method)
    return row


def _jsonable(value: Any) -> Any:
    """Tuples to lists, dataclasses already dicts; anything else to str, so the JSON column takes it."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class PendingImpact:
    proposals: int = 0
    estimated: int = 0
    failed: int = 0


def estimate_pending(engine: Engine) -> PendingImpact:
    """Estimate every pending proposal that has no impact estimate yet (the pipeline's impact stage)."""
    from sqlalchemy import select

    with Session(engine) as session:
        pending = list(session.scalars(select(Proposal.id).where(Proposal.status == "pending").order_by(Proposal.id)))
        done = set(session.scalars(select(ImpactEstimate.proposal_id).where(ImpactEstimate.proposal_id.in_(pending or [-1]))))
    result = PendingImpact(proposals=len(pending))
    for proposal_id in pending:
        if proposal_id in done:
            continue
        try:
            run_impact(engine, proposal_id)
            result.estimated += 1
        except RadarError as exc:
            # One proposal with a bad rule must not keep the others from their estimates.
            log.warning("impact of proposal %s not estimated: %s", proposal_id, exc)
            result.failed += 1
    return result


def latest_impact(engine: Engine, proposal_id: int) -> ImpactEstimate | None:
    from sqlalchemy import select

    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(
            select(ImpactEstimate).where(ImpactEstimate.proposal_id == proposal_id).order_by(ImpactEstimate.id.desc()).limit(1)
        ).first()


__all__ = ["default_catalogue", "demo_catalogue", "estimate_pending", "latest_impact", "run_impact"]
