"""``leviathan forge …``: play the human reviewer on the local forge (list, show, merge, close, review,
comment, lock, collaborator, dashboard, tick), and its CI (status); ``check --target ID`` tests any target's
forge access.

Exit codes: 0 done, 1 the forge refused because of its state (merge conflict, PR not open) or the check
found a problem, 2 bad input or an unreadable forge. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from leviathan_lib.core.names import DASHBOARD_LABEL
from leviathan_lib.cycle import ticks
from leviathan_lib.forge import local_webhooks
from leviathan_lib.forge.base import ForgeConflict, ForgeError, PullRequest
from leviathan_lib.forge.local import LocalForge, Requests


def register(subparsers: argparse._SubParsersAction) -> None:
    forge = subparsers.add_parser("forge", help="review pull requests on the local forge")
    sub = forge.add_subparsers(dest="forge_command", required=True, metavar="ACTION")

    def action(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help)
        parser.add_argument(
            "--repo", required=True, metavar="PATH", help="the bare repository (or file:// URL)"
        )
        parser.set_defaults(func=lambda args: _guarded(func, args))
        return parser

    p = sub.add_parser("check", help="test a target's forge connection: what its token may do (GitHub) or that "
                                     "the repository is readable and writable (local)")
    p.add_argument("--target", required=True, metavar="ID", help="the target_id (from the targets folder)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=lambda args: _guarded(_check, args))

    p = action("list", "list pull requests", _list)
    p.add_argument("--state", choices=["open", "merged", "closed", "all"], default="open")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = action("show", "show one pull request", _show)
    p.add_argument("number", type=int)
    p.add_argument("--diff", action="store_true", help="include the diff base...head")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = action("merge", "merge a pull request into its base branch", _merge)
    p.add_argument("number", type=int)

    p = action("close", "close a pull request without merging", _close)
    p.add_argument("number", type=int)

    p = action("dashboard", "print the dashboard issue(s) Leviathan keeps (target key dashboard: true)", _dashboard)
    p.add_argument("--json", action="store_true", help="print JSON")
    for name, verb in (("close-issue", "close"), ("reopen-issue", "reopen")):
        p = action(name, f"{verb} an issue (a closed dashboard is left alone until it is reopened)", _issue_state)
        p.add_argument("number", type=int)
    p = action("tick", "tick a box on the dashboard issue as a user, as a click in the forge's web page does "
                       "(the next cycle serves it if the user may write)", _tick)
    p.add_argument("number", type=int, help="the dashboard issue")
    p.add_argument("--pr", type=int, required=True, help="the pull request the box is for")
    p.add_argument("--action", required=True, choices=["retry", "rebase"], help="which of its boxes")
    p.add_argument("--as", dest="author", required=True, metavar="LOGIN", help="the user who ticks it")
    p = action("review", "review a pull request as a user (--request-changes: Leviathan's next attempt "
                         "starts from its branch, if the user may write)", _review)
    p.add_argument("number", type=int)
    p.add_argument("--as", dest="author", required=True, metavar="LOGIN", help="the reviewing user")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--request-changes", dest="state", action="store_const", const="CHANGES_REQUESTED")
    kind.add_argument("--approve", dest="state", action="store_const", const="APPROVED")
    kind.add_argument("--comment", dest="state", action="store_const", const="COMMENTED")
    p.add_argument("--body", default="", help="the review text")

    p = action("comment", "comment on a pull request as a user (e.g. '/leviathan retry')", _comment)
    p.add_argument("number", type=int)
    p.add_argument("--as", dest="author", required=True, metavar="LOGIN", help="the commenting user")
    p.add_argument("--body", required=True, help="the comment text")

    p = action("lock", "lock a pull request's conversation as a maintainer (Leviathan's replies are refused)",
               _lock)
    p.add_argument("number", type=int)
    p.add_argument("--unlock", action="store_true", help="unlock it again")

    p = action("status", "record a CI status on a pull request's head (or a branch's tip), as a CI script does; "
                         "the newest report of a context replaces the older one", _status)
    p.add_argument("number", type=int, nargs="?", help="the pull request (its head commit gets the status)")
    p.add_argument("--branch", help="instead of a PR: the branch (or full commit id) whose tip gets it")
    p.add_argument("--context", required=True, help="the check's name, e.g. ci/tests")
    p.add_argument("--state", required=True, choices=["pending", "success", "failure"])
    p.add_argument("--description", default="", help="what the check reports (shown as untrusted text)")

    p = action("collaborator", "set a user's permission (write, maintain or admin may command Leviathan)",
               _collaborator)
    p.add_argument("login")
    p.add_argument("permission", choices=["admin", "maintain", "write", "triage", "read", "none"])


def _guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return func(args)
    except ForgeConflict as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ForgeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _list(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    prs = forge.list_prs(None if args.state == "all" else args.state)
    if args.json:
        print(json.dumps([pr.model_dump(mode="json") for pr in prs], indent=2))
        return 0
    if not prs:
        print(f"no {'' if args.state == 'all' else args.state + ' '}pull requests")
        return 0
    rows = [("#", "STATE", "HEAD -> BASE", "TITLE", "CREATED (UTC)")]
    rows += [(str(p.number), p.state, f"{p.head} -> {p.base}", p.title, _when(p.created_at)) for p in prs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]]))
    return 0


def _describe(pr: PullRequest, requests: Requests) -> str:
    lines = [
        f"#{pr.number} {pr.title}",
        f"state:   {pr.state}",
        f"branch:  {pr.head} -> {pr.base}",
        f"head:    {pr.head_sha or '-'}",
        f"url:     {pr.url}",
        f"created: {_when(pr.created_at)} UTC   updated: {_when(pr.updated_at)} UTC",
    ]
    for name, values in (("labels", requests.labels), ("reviewers", requests.reviewers),
                         ("assignees", requests.assignees)):
        if values:
            lines.append(f"{name}: {', '.join(values)}")
    if pr.merged_at:
        lines.append(f"merged:  {_when(pr.merged_at)} UTC as {pr.merge_sha}")
    elif pr.closed_at:
        lines.append(f"closed:  {_when(pr.closed_at)} UTC")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    pr = forge.get_pr(args.number)
    comments = forge.comments(args.number)
    requests = forge.requests(args.number)
    diff = forge.diff(args.number) if args.diff else None
    if args.json:
        data = pr.model_dump(mode="json")
        data["comments"] = [c.model_dump(mode="json") for c in comments]
        data["reviews"] = [r.model_dump(mode="json") for r in forge.list_reviews(args.number)]
        data["statuses"] = [st.model_dump(mode="json") for st in forge.statuses(pr.head_sha or "")]
        data.update(requests.model_dump(mode="json"))
        if diff is not None:
            data["diff"] = diff
        print(json.dumps(data, indent=2))
        return 0
    print(_describe(pr, requests))
    print()
    print(pr.body.rstrip() or "(no description)")
    statuses = forge.statuses(pr.head_sha) if pr.head_sha else []
    if statuses:
        print(f"\n--- CI on {pr.head_sha}: {forge.ci_status(pr.head_sha or '').state}")
        for st in statuses:
            print(f"{st.state:<8} {st.context}  {_when(st.updated_at)} UTC  {st.description}".rstrip())
    for r in forge.list_reviews(args.number):
        print(f"\n--- review {r.id} by {r.author}: {r.state} {_when(r.submitted_at)} UTC\n{r.body.rstrip()}")
    for c in comments:
        print(f"\n--- comment by {c.author} {_when(c.created_at)} UTC\n{c.body.rstrip()}")
    if diff is not None:
        print(f"\n--- diff {pr.base}...{pr.head}")
        print(diff.rstrip() or "(no changes)")
    return 0


def _emitted(forge: LocalForge, *deliveries: tuple[str, dict[str, Any]]) -> None:
    """The delivery GitHub would send for this action, when a webhook receiver is configured (local_webhooks)."""
    note = local_webhooks.emit(forge.path, *deliveries)
    if note:
        print(note)


def _merge(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    pr = forge.merge(args.number)
    print(f"merged #{pr.number} ({pr.head} -> {pr.base}) as {pr.merge_sha}")
    _emitted(forge, ("pull-request-closed", {"number": pr.number, "branch": pr.head, "base": pr.base, "merged": True}),
             ("push", {"branch": pr.base}))
    return 0


def _review(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    review = forge.review(args.number, author=args.author, state=args.state, body=args.body)
    print(f"review {review.id} on #{args.number} by {review.author}: {review.state}")
    pr = forge.get_pr(args.number)
    _emitted(forge, ("pull-request-review-submitted", {"number": pr.number, "branch": pr.head, "base": pr.base}))
    return 0


def _comment(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    forge.comment(args.number, args.body, author=args.author)
    print(f"comment {len(forge.list_comments(args.number))} on #{args.number} by {args.author}")
    _emitted(forge, ("issue-comment-created", {"number": args.number}))
    return 0


def _lock(args: argparse.Namespace) -> int:
    LocalForge(args.repo).lock(args.number, locked=not args.unlock)
    print(f"#{args.number} {'unlocked' if args.unlock else 'locked'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    if (args.number is None) == (args.branch is None):
        raise ValueError("give a pull request number or --branch, not both")
    forge = LocalForge(args.repo)
    sha = forge.commit_of(args.branch) if args.branch else forge.get_pr(args.number).head_sha
    if sha is None:
        raise ForgeError(f"pull request #{args.number} has no head commit")
    status = forge.set_status(sha, context=args.context, state=args.state, description=args.description)
    print(f"{args.context}: {args.state} on {sha} (CI {status.state})")
    if args.state != "pending":
        branch = args.branch or forge.get_pr(args.number).head
        _emitted(forge, ("check-suite-completed", {"branch": branch}))
    return 0


def _collaborator(args: argparse.Namespace) -> int:
    LocalForge(args.repo).set_permission(args.login, args.permission)
    print(f"{args.login}: {args.permission}")
    return 0


def _close(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    pr = forge.close_pr(args.number)
    print(f"closed #{pr.number} ({pr.head}); the branch is kept")
    _emitted(forge, ("pull-request-closed", {"number": pr.number, "branch": pr.head, "base": pr.base}))
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    issues = [i for i in LocalForge(args.repo).list_issues() if DASHBOARD_LABEL in i.labels]
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in issues], indent=2))
        return 0
    if not issues:
        print("no dashboard issue (set dashboard: true on the target; the next cycle writes it)")
        return 0
    for issue in issues:
        print(f"#{issue.number} [{issue.state}] {issue.title}\n\n{issue.body.rstrip()}\n")
    return 0


def _tick(args: argparse.Namespace) -> int:
    forge = LocalForge(args.repo)
    body = ticks.tick(forge.get_issue(args.number).body, args.action, args.pr)
    forge.edit_issue_body(args.number, body, editor=args.author)
    print(f"issue #{args.number}: {args.author} ticked {args.action} on #{args.pr}; the next cycle reads it")
    return 0


def _issue_state(args: argparse.Namespace) -> int:
    issue = LocalForge(args.repo).set_issue_state(args.number, "closed" if args.forge_command == "close-issue"
                                                  else "open")
    print(f"issue #{issue.number} is {issue.state}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from leviathan_lib.control.fleet import target_files
    from leviathan_lib.core import target_scan
    from leviathan_lib.forge.check import check_target

    entries, folder_problem = target_files()
    if folder_problem:
        raise ValueError(folder_problem)
    files = target_scan.by_target(entries).get(args.target, [])
    if not files:
        raise ValueError(f"no target {args.target!r} in the targets folder")
    if len(files) != 1 or files[0].target is None:
        raise ValueError(f"target {args.target!r} cannot be used: {'; '.join(p for f in files for p in f.problems)}")
    result = check_target(files[0].target, Path(files[0].path))
    if args.json:
        print(json.dumps({**result.model_dump(mode="json"), "ok": result.ok}, indent=2))
    else:
        print(f"{result.forge} forge {result.repository}")
        for fact in result.facts:
            print(f"  {fact}")
        print("ok" if result.ok else f"problem: {result.problem}: {result.detail}")
    return 0 if result.ok else 1
