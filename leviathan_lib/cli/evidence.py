"""``leviathan evidence``: query the cycle history in the Airflow metadata DB; ``leviathan scorecard``: how the
PRs fare, from the running totals in it (:mod:`leviathan_lib.evidence.scorecard`).

Runs where Airflow's configuration is (like the ``airflow`` CLI, with the same DB credentials), and
reads only Leviathan's evidence assets. ``--prune`` is the retention path: see docs/evidence.md.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.evidence.records import REQUEST_KINDS, CycleRecord, parse_records


def _iso(value: str, flag: str, command: str = "leviathan evidence") -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problem = Problem(command, flag, f"expected an ISO 8601 time, got {value!r}")
        raise ValidationFailed([problem]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _load(target_id: str | None, since: datetime | None) -> tuple[list[CycleRecord], list[Any]]:
    from leviathan_lib.control.evidence_db import record_rows

    rows, after = [], 0
    for _ in range(10_000):  # bounded: 10M records at most
        page = record_rows(after_row=after, target_id=target_id, since=since)
        if not page:
            break
        rows.extend(page)
        after = page[-1][0]
    history = parse_records([(run_id, extra) for _, _, run_id, extra in rows])
    return history.cycles, history.unreadable


def _check_known(target_id: str, command: str = "leviathan evidence") -> None:
    """An empty history is an answer only for a target that exists: a mistyped id must not read as "no
    cycles yet". A target whose file is gone but whose evidence remains is still known."""
    from leviathan_lib.control.evidence_db import record_rows
    from leviathan_lib.control.fleet import configured_targets

    configured = configured_targets()
    if target_id in configured or record_rows(target_id=target_id, limit=1):
        return
    names = ", ".join(sorted(configured)) or "none"
    problem = Problem(command, f"--target {target_id!r}", f"no such target (configured: {names})")
    raise ValidationFailed([problem])


def _row(record: CycleRecord) -> dict[str, Any]:
    attempt = record.attempt
    return {
        "recorded_at": record.recorded_at.isoformat(timespec="seconds"),
        "target_id": record.target_id,
        "run_id": record.dag_run_id,
        "decision": ("replay:" if record.replay else "") + record.decision,
        "reasons": ",".join(record.reasons) or "-",
        "task": record.selected_task or "-",
        "attempt": f"{attempt.attempt} {attempt.outcome}" if attempt else "-",
        "pr": f"#{attempt.pr_number}" if attempt and attempt.pr_number else "awaiting CI"
        if attempt and attempt.awaiting_ci else "-",
        "stopped": record.stopped_reason,
        "lifecycle": _lifecycle(record),
        "checks": _checks(record),
    }


def _checks(record: CycleRecord) -> str:
    """The attempt's checks in a few words, each ``name base/change``: ``lint-docs pass/FAIL(1)``."""
    attempt = record.attempt
    if attempt is None:
        return ""
    return " ".join(f"{name} {base}/{change}" for name, base, change in attempt.check_statuses())


def _lifecycle(record: CycleRecord) -> str:
    """The PR lifecycle of one cycle in a few words: ``#1 merged branch deleted; #2 human_edited``, plus what
    it did to the dashboard issue (``dashboard #3 updated``)."""
    parts = []
    for change in record.pr_sync:
        branch = " branch deleted" if change.branch_deleted else f" branch kept ({change.branch_kept})" \
            if change.branch_kept else ""
        parts.append(f"#{change.number} {change.state}{branch}")
    for action in record.lifecycle:
        if action.number is None or action.kind == "pr_created":  # a branch held for green CI (checks_pass)
            number = f" #{action.number}" if action.number is not None else ""
            parts.append(f"{action.branch} {action.kind}{number}" + (f" ({action.detail})" if action.detail else ""))
        elif action.kind == "feedback_ignored":
            parts.append(f"#{action.number} ignored {action.author} ({action.reason})")
        elif action.kind in REQUEST_KINDS:  # the next attempt continues the PR
            parts.append(f"#{action.number} {action.kind} by {action.author}")
        elif action.kind.startswith("ci_"):  # a head's new CI state, or no fix left
            parts.append(f"#{action.number} {action.kind}" + (f" ({action.detail})" if action.detail else ""))
        else:
            pending = "" if action.commented or action.kind == "pr_refresh_limit" else " (not commented yet)"
            parts.append(f"#{action.number} {action.kind}" + pending)
    attempt = record.attempt
    if attempt is not None and attempt.continued_pr is not None:
        done = "refreshed" if attempt.continue_why == "pr_conflicted" else "updated"
        parts.append(f"#{attempt.continued_pr} {done if attempt.pr_number else f'not {done}'}")
    dashboard = record.dashboard
    if dashboard is not None:
        what = dashboard.kind.removeprefix("dashboard_")
        code = f" ({dashboard.error_code})" if dashboard.error_code else ""
        parts.append(f"dashboard #{dashboard.number or '-'} {what}{code}")
    return "; ".join(parts)


def cmd_evidence(args: argparse.Namespace) -> int:
    if not args.target and not args.cycle:
        raise ValidationFailed([Problem("evidence", "--target", "give --target ID or --cycle RUN_ID")])
    since = _iso(args.since, "--since") if args.since else None
    records, unreadable = _load(args.target, since)
    if args.target and not records and not unreadable:
        _check_known(args.target)
    for bad in unreadable:
        print(f"warning: unreadable evidence record from run {bad.run_id}: {bad.problem}")
    if args.cycle:
        matches = [r for r in records if r.dag_run_id == args.cycle]
        if not matches:
            raise ValidationFailed([Problem("--cycle", "run_id", f"no evidence for run {args.cycle!r}")])
        print(json.dumps([m.model_dump(mode="json") for m in matches], indent=2))
        return 0
    if args.task:
        records = [r for r in records
                   if r.selected_task == args.task or (r.attempt is not None and r.attempt.task_id == args.task)]
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return 0
    rows = [_row(r) for r in records]
    columns = ["recorded_at", "run_id", "decision", "reasons", "task", "attempt", "pr", "stopped"]
    if any(row["lifecycle"] for row in rows):  # a merge, close, human edit, refresh, feedback or dashboard
        columns.append("lifecycle")
    if any(row["checks"] for row in rows):  # the repository's own checks of an attempt, on base/change
        columns.append("checks")
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from leviathan_lib.control.fleet import named_targets
    from leviathan_lib.control.scorecard import report
    from leviathan_lib.evidence.scorecard import LABELS, counts_later

    command = "leviathan scorecard"
    since = _iso(args.since, "--since", command) if args.since else None
    if args.target:
        _check_known(args.target, command)
    result = report({args.target} if args.target else named_targets(), since)
    if args.json:
        print(json.dumps(result.document(), indent=2))
        return 0
    for tid, why in sorted(result.unknown.items()):
        print(f"warning: {tid}: scorecard unknown: {why}")
    cards = [*result.targets, *([] if args.target else [result.fleet])]
    rows = [{"TARGET": card.target_id or "(fleet)",
             "SINCE": card.since.isoformat(timespec="seconds") if card.since else "-",
             **{key.upper(): cell for key, cell in card.cells().items()}} for card in cards]
    columns = ["TARGET", "SINCE", *(key.upper() for key in LABELS)]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in columns}
    for row in [dict(zip(columns, columns, strict=True)), *rows]:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    for card in cards:
        if counts_later(card) and card.scorecard_since:
            print(f"{card.target_id or '(fleet)'}: merged, closed, merge times, checks, CI and cost counted since "
                  f"{card.scorecard_since.isoformat(timespec='seconds')} (the first record that kept them)")
    print("MEDIAN_MERGE is an estimate: the time-to-merge bucket holding the median; — : nothing to measure yet")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from leviathan_lib.control.retention import prune

    removed = prune(older_than=timedelta(days=args.older_than_days), keep_attempts=args.keep_attempts,
                    dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {removed} evidence record(s) older than {args.older_than_days} day(s)")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("evidence", help="query cycle evidence (per cycle: decision, reasons, PR)")
    parser.add_argument("--target", help="target_id")
    parser.add_argument("--since", help="ISO 8601 time; only records at or after it")
    parser.add_argument("--task", help="only cycles that selected or attempted this task")
    parser.add_argument("--cycle", metavar="RUN_ID", help="one cycle in full (JSON)")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.set_defaults(func=cmd_evidence)
    card = subparsers.add_parser("scorecard", help="PRs merged, closed, reverted; pass rates; cost per merged PR")
    card.add_argument("--target", help="target_id (default: every target, and the fleet)")
    card.add_argument("--since", help="ISO 8601 time; count only what was recorded after it")
    card.add_argument("--json", action="store_true", help="a stable JSON document instead of a table")
    card.set_defaults(func=cmd_scorecard)
    prune_parser = subparsers.add_parser("evidence-prune", help="delete old evidence, keeping what guardrails need")
    prune_parser.add_argument("--older-than-days", type=int, required=True)
    prune_parser.add_argument("--keep-attempts", type=int, default=10,
                              help="attempt records kept per task regardless of age (default 10)")
    prune_parser.add_argument("--dry-run", action="store_true")
    prune_parser.set_defaults(func=cmd_prune)
