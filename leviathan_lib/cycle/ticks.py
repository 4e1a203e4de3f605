"""Ticks on the dashboard issue: boxes a user with write permission ticks to act on one of Leviathan's PRs.

Renovate's Dependency Dashboard lets a maintainer tick a box instead of typing a command; so does this one.
For each open PR nobody else pushed to, the dashboard lists two boxes (:func:`boxes`): retry the task (one
more attempt from the PR's branch) and bring the PR up to date with its base now. Each box carries a hidden
marker naming its verb and PR. Each cycle's PR sync reads the issue once (:func:`read_ticks`), only while the
ledger holds its number and one of its PRs is open (on GitHub an unchanged issue is a conditional read, ``304``):

- the body is the one Leviathan wrote (the ledger holds its hash): nothing was ticked;
- the body with its ticked boxes unticked is the one Leviathan wrote: each ticked box is the comment command
  of the same verb on that PR, with the same permission check and the same budgets, and the same reply on
  the PR (keyed ``t<tick>``: the target's running tick number, so replays and retries never post twice);
- anything else (text changed, a marker moved or forged): no box is read (``dashboard_tampered``).

Who ticked: the local forge names the editor, whose permission is asked like a commenter's. GitHub's REST API
names no editor, but only the issue's author (Leviathan's own account) and people with write access may edit
an issue someone else wrote, so a tick there is from someone with write access (docs/pull-requests.md).

Every tick read (and a tampered body) is listed on the dashboard, whose rewrite in the same cycle unticks the
boxes and undoes any other edit. Airflow-free.
"""

from __future__ import annotations

import hashlib
import logging
import re

from leviathan_lib.core import inert
from leviathan_lib.core.commands import COMMANDS, may_command
from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.evidence.records import DashboardState, LedgerPR, LifecycleAction
from leviathan_lib.forge.base import Forge, ForgeError

log = logging.getLogger("leviathan")

#: PRs the dashboard offers boxes for at most (two boxes each), so ticks per cycle are bounded too.
MAX_BOXED_PRS = 10
_MARKER = "<!-- leviathan-tick: {verb} {number} -->"
_TICKED = re.compile(r"^- \[[xX]\] .*<!-- leviathan-tick: (retry|rebase) ([1-9][0-9]{0,9}) -->$", re.MULTILINE)
_ANY_TICKED = re.compile(r"^- \[[xX]\] ", re.MULTILINE)
#: How a tick's author is named where the forge names no editor (GitHub), in replies and on the dashboard.
UNNAMED = "someone with write access"


def boxes(open_prs: list[LedgerPR]) -> list[str]:
    """The dashboard's boxes for the PRs Leviathan may still push to (none on a PR a human pushed to)."""
    lines: list[str] = []
    for pr in [p for p in open_prs if not p.human_edited][:MAX_BOXED_PRS]:
        lines.append(f"- [ ] retry task {inert.md(pr.task_id, limit=120)} on #{pr.number}: one more attempt from "
                     f"its branch {_MARKER.format(verb='retry', number=pr.number)}")
        lines.append(f"- [ ] bring #{pr.number} up to date with its base now "
                     f"{_MARKER.format(verb='rebase', number=pr.number)}")
    return lines


def tick(body: str, verb: str, number: int) -> str:
    """``body`` with the box for ``verb`` on PR ``number`` ticked, as a user's click does; ValueError: no such
    box (the PR is not offered, or the verb is not ``retry`` or ``rebase``)."""
    marker = _MARKER.format(verb=verb, number=number)
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("- [ ] ") and line.endswith(marker):
            lines[i] = "- [x] " + line[len("- [ ] "):]
            return "\n".join(lines)
    raise ValueError(f"the dashboard has no unticked box to {verb} #{number} (it lists boxes only for open PRs "
                     "nobody else pushed to)")


def _sha(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()


def read_ticks(forge: Forge, state: DashboardState, known: list[LedgerPR],
               open_numbers: set[int]) -> list[LifecycleAction]:
    """The requests and refusals the dashboard's ticked boxes amount to (see the module docstring).

    ``known``: the ledger's open PRs still open; ``open_numbers``: the PRs the forge lists open now. An issue
    that cannot be read is left for the next cycle.
    """
    if state.number is None or state.closed or state.body_sha256 is None \
            or not any(pr.number in open_numbers for pr in known):  # no PR open: no box to tick
        return []
    try:
        issue = forge.get_issue(state.number)
    except ForgeError as exc:
        log.info("dashboard #%s: ticks not read (%s)", state.number, exc.code)
        return []
    if issue.state != "open" or _sha(issue.body) == state.body_sha256:
        return []
    tick = state.ticks_read + 1
    if _sha(_ANY_TICKED.sub("- [ ] ", issue.body)) != state.body_sha256:
        log.warning("dashboard #%s was edited beyond its boxes: no tick read, its body is restored", state.number)
        return [LifecycleAction(kind="feedback_ignored", number=None, task_id="", branch="", tick=tick,
                                author=issue.edited_by, reason=ReasonCode.DASHBOARD_TAMPERED.value, detail="edit")]
    wanted: dict[int, str] = {}
    for match in _TICKED.finditer(issue.body.replace("\r\n", "\n")):
        number, verb = int(match.group(2)), match.group(1)
        wanted[number] = "rebase" if "rebase" in (verb, wanted.get(number)) else verb  # rebase includes a retry
    permission = _permission(forge, issue.edited_by)
    by_number = {pr.number: pr for pr in known if not pr.human_edited}
    actions: list[LifecycleAction] = []
    for number, verb in sorted(wanted.items())[: 2 * MAX_BOXED_PRS]:
        pr = by_number.get(number) if number in open_numbers else None
        common = {"number": number, "task_id": pr.task_id if pr else "", "branch": pr.branch if pr else "",
                  "tick": tick, "author": issue.edited_by or ""}
        if pr is None:
            actions.append(LifecycleAction(kind="feedback_ignored", reason=ReasonCode.DASHBOARD_TICK_STALE.value,
                                           detail=verb, **{**common, "number": None}))
        elif not may_command(permission):
            actions.append(LifecycleAction(kind="feedback_ignored", reason=ReasonCode.COMMAND_NOT_PERMITTED.value,
                                           detail=f"{verb} by a user with permission {permission}", **common))
        else:
            actions.append(LifecycleAction(kind=COMMANDS[verb], **common))
        log.info("dashboard #%s: %s on #%s ticked by %s: %s", state.number, verb, number,
                 issue.edited_by or UNNAMED, actions[-1].reason or "queued")
        tick += 1
    return actions


def _permission(forge: Forge, editor: str | None) -> str:
    """The editor's permission; GitHub names no editor, and lets only write access edit this issue."""
    if editor is None:
        return "write"
    try:
        return forge.permission(editor)
    except ForgeError as exc:
        log.warning("permission of %s unknown (%s): the tick is refused", editor, exc.code)
        return "unknown"
