"""Review: accept, edit or reject a proposal, writing the policy file safely and keeping the audit trail.

Accepting a proposal:

1. takes an exclusive lock on ``<policy file>.lock`` (``fcntl.flock``), so two reviews on this machine
   never read-modify-write the policy file at the same time;
2. re-reads the proposal: only a ``pending`` one can be decided, so applying a proposal twice is refused
   with who decided it and when;
3. applies the proposal's unified diff to the policy file *as it is now*. When the file is unchanged since
   drafting (same sha256 as ``base_hash``) that is the drafted change exactly. When it changed, the
   diff is **re-based**: each hunk is applied where its context lines are found now (the nearest place to
   where it was), exactly as ``patch`` does without fuzz, and the review says so. When a hunk's lines
   were themselves changed, the proposal is marked ``stale`` and nothing is written: a change is never
   applied blindly. ``radar propose`` then re-drafts it against the current rules;
4. validates the result (:func:`radar.rules.parse_rules`: a conflicting or duplicate rule is refused);
5. claims the proposal with a compare-and-set, ``UPDATE proposal SET status='accepted' WHERE id=… AND
   status='pending'`` — a row lock on PostgreSQL, the write lock on SQLite — so of two reviewers exactly
   one wins even across machines sharing the database, and records the Review row (who, when, comment,
   policy sha256 before and after, the impact estimate);
6. writes the file with :func:`radar.rules.write_rules` (temporary file, fsync, rename; the previous
   version copied to ``history/``), then commits. If the commit fails the previous text is put back, so
   the file and the history never disagree.

Editing is accepting with the reviewer's version of the rule (a YAML file with one rule) in place of the
drafted one. Rejecting needs a comment and never touches the file.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from radar.errors import ConfigError, RadarError
from radar.models import ImpactEstimate, Proposal, Review, utcnow

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 60.0
DECISIONS = ("accept", "edit", "reject")


class ReviewError(RadarError):
    """A review that cannot be carried out as asked; the message says why and what to do."""


class PatchConflict(ReviewError):
    """A hunk of a proposal's diff no longer matches the policy file."""


# --- applying a unified diff ----------------------------------------------------------------------------

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    old_start: int  # 1-based line in the file the diff was made against
    old: list[str]
    new: list[str]


def parse_diff(diff: str) -> list[Hunk]:
    """The hunks of a unified diff as made by :func:`difflib.unified_diff`.

    Each hunk is read for exactly the line counts its header gives, so a removed YAML line that itself
    starts with "-- " is never mistaken for a file header.
    """
    hunks: list[Hunk] = []
    lines = diff.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        found = _HUNK.match(lines[i])
        i += 1
        if not found:
            continue  # file headers (--- a/…, +++ b/…) and anything else between hunks
        old_left = int(found.group(2)) if found.group(2) is not None else 1
        new_left = int(found.group(4)) if found.group(4) is not None else 1
        hunk = Hunk(int(found.group(1)), [], [])
        hunks.append(hunk)
        while (old_left > 0 or new_left > 0) and i < len(lines):
            line = lines[i]
            i += 1
            if line.startswith("\\"):  # "\ No newline at end of file"
                continue
            tag, body = line[:1], line[1:]
            if tag == " " or line in ("\n", "\r\n"):
                # A blank context line may have lost its leading space in transit (e-mail, web forms).
                body = body if tag == " " else line
                hunk.old.append(body)
                hunk.new.append(body)
                old_left -= 1
                new_left -= 1
            elif tag == "-":
                hunk.old.append(body)
                old_left -= 1
            elif tag == "+":
                hunk.new.append(body)
                new_left -= 1
            else:
                raise PatchConflict(f"the proposal's diff is damaged near {line[:80]!r}: not a line of a unified diff")
        if old_left > 0 or new_left > 0:
            raise PatchConflict("the proposal's diff is truncated: its last hunk is shorter than its header says")
    return hunks


def apply_diff(text: str, diff: str) -> tuple[str, list[int]]:
    """Apply a unified diff to ``text``; returns the new text and each hunk's offset in lines.

    Each hunk must find its old lines (context and removed lines) exactly; it is placed at the match
    nearest to its recorded position, after the previous hunk. PatchConflict names the first hunk that
    does not apply.
    """
    lines = text.splitlines(keepends=True)
    hunks = parse_diff(diff)
    if not hunks:
        raise PatchConflict("the proposal's diff is empty: there is nothing to apply")
    out: list[str] = []
    position = 0  # index in ``lines`` up to which ``out`` holds the result
    offsets = []
    delta = 0
    for number, hunk in enumerate(hunks, 1):
        expected = max(0, hunk.old_start - 1 + delta) if hunk.old else max(0, hunk.old_start + delta)
        size = len(hunk.old)
        candidates = [p for p in range(position, len(lines) - size + 1) if lines[p:p + size] == hunk.old] if size else [expected]
        if not candidates:
            first = next((line for line in hunk.old if line.strip()), "").strip()
            raise PatchConflict(
                f"hunk {number} (at line {hunk.old_start} when drafted, around {first[:60]!r}) no longer matches: "
                "the lines it changes were edited since"
            )
        at = min(candidates, key=lambda p: (abs(p - expected), p))
        offsets.append(at - (hunk.old_start - 1 if hunk.old else hunk.old_start))
        out.extend(lines[position:at])
        out.extend(hunk.new)
        position = at + size
        delta += len(hunk.new) - size
    out.extend(lines[position:])
    return "".join(out), offsets


# --- the policy file lock ------------------------------------------------------------------------------


@contextmanager
def policy_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive lock beside the policy file for a read-modify-write."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise ReviewError(
                        f"{path} is being written by another review (lock {lock_path} held for over {timeout:.0f} s); try again"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- decisions -------------------------------------------------------------------------------------------


@dataclass
class ReviewOutcome:
    review: Review
    proposal: Proposal
    policy_path: Path | None = None
    kept: Path | None = None
    rebased: bool = False
    notes: list[str] = field(default_factory=list)
    diff_applied: str = ""


def _check_reviewer(reviewer: str) -> str:
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ReviewError("a review needs the reviewer's name (--reviewer NAME)")
    if len(reviewer) > 100:
        raise ReviewError(f"reviewer name {reviewer[:20]!r}… is longer than 100 characters")
    return reviewer


def _get(session: Session, proposal_id: int) -> Proposal:
    proposal = session.get(Proposal, proposal_id)
    if proposal is None:
        raise ReviewError(f"no proposal {proposal_id}; `radar review list` shows the pending ones")
    return proposal


def _refuse_decided(session: Session, proposal: Proposal, verb: str) -> None:
    last = session.scalars(
        select(Review).where(Review.proposal_id == proposal.id).order_by(Review.id.desc()).limit(1)
    ).first()
    if proposal.status == "stale":
        raise ReviewError(
            f"proposal {proposal.id} is stale: the policy changed since it was drafted and its change no longer "
            f"applies; run `radar propose` to re-draft it against the current rules. Nothing was {verb}."
        )
    who = f" by {last.reviewer} on {_when(last.created_at)} (review {last.id})" if last else ""
    raise ReviewError(f"proposal {proposal.id} was already {proposal.status}{who}; nothing was {verb}")


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


def _claim(session: Session, proposal_id: int, status: str) -> bool:
    """Compare-and-set pending → status; True for the one caller that won."""
    rows = session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status == "pending")
        .values(status=status, updated_at=utcnow())
    ).rowcount
    return rows == 1


def _impact_id(session: Session, proposal_id: int, wanted: int | None) -> int | None:
    if wanted is not None:
        row = session.get(ImpactEstimate, wanted)
        if row is None or row.proposal_id != proposal_id:
            raise ReviewError(f"impact estimate {wanted} is not an estimate of proposal {proposal_id}; "
                              f"`radar impact {proposal_id}` makes one")
        return row.id
    return session.scalars(
        select(ImpactEstimate.id).where(ImpactEstimate.proposal_id == proposal_id).order_by(ImpactEstimate.id.desc()).limit(1)
    ).first()


def load_rule_file(path: str | Path) -> dict[str, Any]:
    """A reviewer's edited rule: a YAML file holding one rule (a mapping), or a policy file with one rule."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: cannot read the edited rule ({exc})") from None
    except yaml.YAMLError as exc:
        raise ReviewError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        if len(data["rules"]) != 1:
            raise ReviewError(f"{path}: holds {len(data['rules'])} rules; an edit replaces exactly one")
        data = data["rules"][0]
    if not isinstance(data, dict):
        raise ReviewError(f"{path}: expected one rule as a mapping (id:, title:, policy_class:, …)")
    return _validated_rule(data, f"{path}: the edited rule")


def _validated_rule(data: Any, what: str) -> dict[str, Any]:
    """A rule given as a mapping, validated and in the stored (JSON) form; ReviewError naming every problem."""
    from pydantic import ValidationError

    from radar.drafting import rule_dict
    from radar.rules import Rule

    if not isinstance(data, dict):
        raise ReviewError(f"{what} must be a mapping of rule fields (id:, title:, policy_class:, …)")
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(rule)'}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ReviewError(f"{what} is not valid: {problems}") from None
    return rule_dict(rule)


def accept(engine: Engine, proposal_id: int, reviewer: str, comment: str = "", *, path: str | Path | None = None,
           edited_rule: dict[str, Any] | None = None, impact_estimate_id: int | None = None) -> ReviewOutcome:
    """Accept (or, with ``edited_rule``, edit and accept) a proposal: write the policy file and record the review."""
    from radar.drafting import policy_path, text_hash, unified_diff
    from radar.rules import dump_rules, parse_rules, write_rules

    reviewer = _check_reviewer(reviewer)
    decision = "edit" if edited_rule is not None else "accept"
    if edited_rule is not None:
        edited_rule = _validated_rule(edited_rule, "the edited rule")
    path = Path(path) if path else policy_path()
    with policy_lock(path):
        with Session(engine, expire_on_commit=False) as session:
            proposal = _get(session, proposal_id)
            if proposal.status != "pending":
                _refuse_decided(session, proposal, "written")
            if edited_rule is not None and edited_rule.get("id") != proposal.rule_id:
                raise ReviewError(
                    f"the edited rule has id {edited_rule.get('id')!r} but proposal {proposal.id} is about "
                    f"{proposal.rule_id!r}; keep the id (a different rule is a different proposal)"
                )
            try:
                before = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ReviewError(f"{path}: cannot read the policy file ({exc}); nothing was written") from None
            hash_before = text_hash(before)
            notes: list[str] = []
            try:
                after, offsets = apply_diff(before, proposal.diff)
            except PatchConflict as exc:
                if _already_applied(before, proposal):
                    raise ReviewError(
                        f"proposal {proposal.id}'s change is already in {path} (rule {proposal.rule_id} reads as "
                        "proposed); nothing was written. Reject it with a comment to close it."
                    ) from None
                _claim(session, proposal.id, "stale")
                session.commit()
                raise ReviewError(
                    f"proposal {proposal.id} was drafted against policy {proposal.base_hash[:12]} but {path} is now "
                    f"{hash_before[:12]}, and its change does not apply cleanly: {exc}. It is marked stale and nothing "
                    "was written; run `radar propose` to re-draft it against the current rules."
                ) from None
            rebased = hash_before != proposal.base_hash
            if rebased:
                moved = [o for o in offsets if o]
                notes.append(
                    f"re-based: drafted against policy {proposal.base_hash[:12]}, applied to the current "
                    f"{hash_before[:12]}; {len(offsets)} hunk(s) applied cleanly"
                    + (f", moved by {', '.join(f'{o:+d}' for o in moved)} line(s)" if moved else " at their original lines")
                )
            try:
                ruleset = parse_rules(after, f"{path} with proposal {proposal.id}")
                if edited_rule is not None:
                    from radar.rules import Rule

                    others = [r for r in ruleset.rules if r.id != proposal.rule_id]
                    after = dump_rules(type(ruleset)(version=ruleset.version, rules=others + [Rule.model_validate(edited_rule)]))
                    ruleset = parse_rules(after, f"{path} with the edited rule {proposal.rule_id}")
                    notes.append("edited by the reviewer before acceptance")
                ruleset.by_id(proposal.rule_id)
            except ConfigError as exc:
                raise ReviewError(f"proposal {proposal.id} would make the policy invalid, so nothing was written: {exc}") from None
            except KeyError:
                raise ReviewError(f"proposal {proposal.id}: rule {proposal.rule_id} is missing after applying it; nothing was written") from None
            if after == before:
                raise ReviewError(f"proposal {proposal.id} changes nothing in {path}; nothing was written")
            impact_id = _impact_id(session, proposal.id, impact_estimate_id)
            if not _claim(session, proposal.id, "accepted"):
                session.rollback()
                _refuse_decided(session, _get(session, proposal_id), "written")
            full_comment = (comment or "").strip()
            if notes:
                full_comment = (full_comment + "\n" if full_comment else "") + "[" + "; ".join(notes) + "]"
            review = Review(
                proposal_id=proposal.id, reviewer=reviewer, decision=decision, comment=full_comment,
                edited_rule=edited_rule, policy_hash_before=hash_before, policy_hash_after=text_hash(after),
                impact_estimate_id=impact_id,
            )
            session.add(review)
            session.flush()
            kept = write_rules(path, after)
            try:
                session.commit()
            except Exception:
                # The database refused the decision: put the previous policy back so file and history agree.
                write_rules(path, before, validate=False, keep_history=False)
                log.error("review of proposal %s not recorded; %s restored to its previous version", proposal.id, path)
                raise
            session.refresh(proposal)
    log.info("proposal %s %sed by %s; %s written (previous kept as %s)", proposal.id, decision, reviewer, path, kept)
    return ReviewOutcome(review, proposal, path, kept, rebased, notes, unified_diff(before, after, path.name))


def _already_applied(text: str, proposal: Proposal) -> bool:
    from radar.drafting import rule_dict
    from radar.rules import parse_rules

    try:
        current = parse_rules(text).by_id(proposal.rule_id)
    except (ConfigError, KeyError):
        return False
    return rule_dict(current) == proposal.rule


def edit(engine: Engine, proposal_id: int, reviewer: str, rule_file: str | Path, comment: str = "", *,
         path: str | Path | None = None, impact_estimate_id: int | None = None) -> ReviewOutcome:
    """Accept a proposal with the reviewer's version of its rule, read from ``rule_file``."""
    return accept(engine, proposal_id, reviewer, comment, path=path, edited_rule=load_rule_file(rule_file),
                  impact_estimate_id=impact_estimate_id)


def reject(engine: Engine, proposal_id: int, reviewer: str, comment: str) -> ReviewOutcome:
    """Reject a proposal with a comment; the policy file is not touched."""
    reviewer = _check_reviewer(reviewer)
    comment = (comment or "").strip()
    if not comment:
        raise ReviewError("a rejection needs a comment saying why (--comment TEXT)")
    with Session(engine, expire_on_commit=False) as session:
        proposal = _get(session, proposal_id)
        if proposal.status != "pending":
            _refuse_decided(session, proposal, "changed")
        if not _claim(session, proposal.id, "rejected"):
            session.rollback()
            _refuse_decided(session, _get(session, proposal_id), "changed")
        review = Review(proposal_id=proposal.id, reviewer=reviewer, decision="reject", comment=comment,
                        impact_estimate_id=_impact_id(session, proposal.id, None))
        session.add(review)
        session.commit()
        session.refresh(proposal)
    log.info("proposal %s rejected by %s", proposal.id, reviewer)
    return ReviewOutcome(review, proposal)


@dataclass
class HistoryEntry:
    review_id: int
    when: datetime
    reviewer: str
    decision: str
    comment: str
    proposal_id: int
    proposal_title: str
    proposal_kind: str
    rule_id: str
    evidence_notice_ids: list[int]
    signal_ids: list[int]
    impact_estimate_id: int | None
    policy_hash_before: str | None
    policy_hash_after: str | None

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["when"] = self.when.isoformat() if self.when else None
        return out


def history(engine: Engine, *, proposal_id: int | None = None, rule_id: str | None = None,
            reviewer: str | None = None, limit: int | None = None) -> list[HistoryEntry]:
    """Every decision on the listing policy, newest first, with the evidence behind it."""
    with Session(engine) as session:
        query = select(Review, Proposal).join(Proposal, Proposal.id == Review.proposal_id).order_by(Review.id.desc())
        if proposal_id is not None:
            query = query.where(Review.proposal_id == proposal_id)
        if rule_id:
            query = query.where(Proposal.rule_id == rule_id)
        if reviewer:
            query = query.where(Review.reviewer == reviewer)
        if limit:
            query = query.limit(limit)
        rows = session.execute(query).all()
    return [
        HistoryEntry(r.id, r.created_at, r.reviewer, r.decision, r.comment, p.id, p.title, p.kind, p.rule_id,
                     list(p.evidence_notice_ids), list(p.signal_ids), r.impact_estimate_id, r.policy_hash_before,
                     r.policy_hash_after)
        for r, p in rows
    ]


def get_proposal(engine: Engine, proposal_id: int) -> Proposal:
    with Session(engine, expire_on_commit=False) as session:
        return _get(session, proposal_id)


def proposal_state(engine: Engine, proposal_id: int, *, path: str | Path | None = None) -> str:
    """Whether a pending proposal still applies: "current", "re-basable" or "stale" (its diff no longer applies)."""
    from radar.drafting import read_policy

    proposal = get_proposal(engine, proposal_id)
    _, text, current_hash = read_policy(Path(path) if path else None)
    if current_hash == proposal.base_hash:
        return "current"
    try:
        apply_diff(text, proposal.diff)
    except PatchConflict:
        return "stale"
    return "re-basable"


__all__ = [
    "DECISIONS", "HistoryEntry", "PatchConflict", "ReviewError", "ReviewOutcome", "accept", "apply_diff", "edit",
    "get_proposal", "history", "load_rule_file", "parse_diff", "policy_lock", "proposal_state", "reject",
]
