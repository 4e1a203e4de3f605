"""Turn a worker's patch into an ``agent/…`` branch and a pull request — outside the worker.

The worker never holds a forge credential; this step does, so it trusts nothing the worker says. The
patch is size-checked, then applied to the pinned commit in git's objects only (a bare repository and
a temporary index: there is no work tree a patch could plant a symlink in), and the resulting tree is
checked before anything else reads it. The backlog status edit is Leviathan's own, made on the pinned
backlog blob, and the delivered backlog must differ from it in that one status line, byte for byte.
The changed paths in the PR and the evidence are git's, never the worker's claim.
"""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from leviathan_lib.contracts.attempt import AttemptResult, ContinuePr
from leviathan_lib.contracts.xcom import AttemptPlan, ReadResult
from leviathan_lib.core.backlog_edit import check_status_edit, set_task_status
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import LeviathanError, ValidationFailed
from leviathan_lib.core.names import AGENT_BRANCH_PREFIX
from leviathan_lib.core.scope import Scope, task_scope
from leviathan_lib.core.secrets_scan import redact_text, scan_bytes
from leviathan_lib.cycle.diffcheck import changed_paths, check_final_diff
from leviathan_lib.cycle.pr_body import render_pr_body
from leviathan_lib.cycle.pr_checks import checks_section
from leviathan_lib.cycle.protected import protected_for
from leviathan_lib.cycle.steps import DELIVERED_STATUS
from leviathan_lib.cycle.untrusted import patch_problem
from leviathan_lib.forge.base import Forge, ForgeError, PullRequest
from leviathan_lib.git.runner import IDENTITY, GitError, run_git

#: Stable codes of a delivery to an open PR (see :class:`~leviathan_lib.core.guardrails.ReasonCode`).
HUMAN_EDITED = "human_edited"
PR_BRANCH_DELETED = "pr_branch_deleted"
PR_BODY_NOT_UPDATED = "pr_body_not_updated"

#: The one piece of ``git apply``'s error worth keeping: which file and line did not apply.
_APPLY_FAILED = re.compile(r"patch failed: (.+):(\d+)$", re.MULTILINE)


class DeliveryRejected(LeviathanError):
    """The change may not be delivered (a guardrail on the final diff said no).

    ``changed_paths`` are the real paths of the change when it could be applied (redacted).
    """

    def __init__(self, code: str, message: str, changed_paths: list[str] | None = None):
        super().__init__(code, message)
        self.changed_paths = changed_paths or []


class Held(BaseModel):
    """A pushed branch whose PR opens once CI on it passes (``pr_creation: checks_pass``): its head, and the
    PR's title and body as delivery built and checked them."""

    head_sha: str
    title: str
    body: str


class Delivery(BaseModel):
    """The pull request, and what it really changes (from git's objects)."""

    #: None when the PR waits for green CI (``held``).
    pr: PullRequest | None
    changed_paths: list[str]
    #: What went wrong after the push (``pr_body_not_updated: ...``); the PR holds the pushed head regardless.
    note: str = ""
    held: Held | None = None


class _Repo:
    """A bare scratch repository with its own index file: every step works on objects only."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path, self.env = path, env

    def git(self, args: list[str], *, input: bytes | str | None = None) -> str:
        out: str = run_git(args, cwd=self.path, input=input, env=self.env).stdout
        return out.strip()

    def blob(self, rev_path: str) -> bytes:
        out: bytes = run_git(["cat-file", "blob", rev_path], cwd=self.path, env=self.env, text=False).stdout
        return out


def _apply(repo: _Repo, base: str, patch: str) -> str:
    """The tree of ``base`` with ``patch`` applied to the index (never to files)."""
    repo.git(["read-tree", base])
    try:
        repo.git(["apply", "--cached", "--whitespace=nowarn", "-"], input=patch.encode("utf-8", "surrogateescape"))
    except GitError as exc:
        where = _APPLY_FAILED.search(exc.stderr)
        at = f" ({redact_text(where.group(1))}, line {where.group(2)})" if where else ""
        raise DeliveryRejected("patch_does_not_apply", f"the patch does not apply to the pinned commit{at}") from None
    return repo.git(["write-tree"])


def _set_status(repo: _Repo, base: str, backlog_path: str, task_id: str) -> bytes:
    """Stage the pinned backlog blob with only the task's status edited; the pinned bytes."""
    meta, _, _name = repo.git(["ls-tree", "-z", base, "--", backlog_path]).rstrip("\0").partition("\t")
    if not meta:
        raise DeliveryRejected("backlog_edited", f"{backlog_path} is missing at the pinned commit")
    mode, _kind, _sha = meta.split(" ")
    before = repo.blob(f"{base}:{backlog_path}")
    try:
        edited = set_task_status(before.decode("utf-8"), task_id, DELIVERED_STATUS).encode("utf-8")
        check_status_edit(before, edited, task_id, DELIVERED_STATUS)
    except (ValueError, ValidationFailed) as exc:
        raise DeliveryRejected("backlog_edited", f"cannot set the status in {backlog_path}: {exc}") from None
    sha = repo.git(["hash-object", "-w", "--no-filters", "--stdin"], input=edited)
    repo.git(["update-index", "--add", "--cacheinfo", f"{mode},{sha},{backlog_path}"])
    return before


def _scan_pr_text(title: str, body: str) -> None:
    for what, text in (("title", title), ("body", body)):
        rules = sorted({f.rule for f in scan_bytes(text.encode("utf-8", "surrogateescape"))})
        if rules:
            raise DeliveryRejected("secret_detected", f"the PR {what} holds possible secrets ({', '.join(rules)})")


class _Built(BaseModel):
    """The commit delivery made, and what the PR shows for it."""

    head_sha: str
    changed_paths: list[str]
    title: str
    body: str


def deliver(
    target: TargetConfig,
    read: ReadResult,
    plan: AttemptPlan,
    result: AttemptResult,
    forge: Forge,
    *,
    run_id: str,
    evidence_summary: dict[str, Any],
    scratch_dir: Path | None = None,
) -> Delivery:
    """Push ``plan.branch`` and open (or find) its PR, or deliver to the open PR the plan continues.
    Idempotent: a rerun returns the same PR."""
    if not plan.branch.startswith(AGENT_BRANCH_PREFIX):
        raise DeliveryRejected("branch_not_agent", f"refusing to push to {plan.branch!r}")
    cont = plan.continue_pr
    if cont is not None and cont.branch != plan.branch:
        raise DeliveryRejected("branch_not_agent", f"the plan's branch {plan.branch!r} is not {cont.branch!r}")
    problem = patch_problem(result.patch)
    if problem:
        raise DeliveryRejected(*problem)
    # The worker's patch is against the pinned commit, or the PR's head when it continued the branch.
    start = cont.head_sha if cont is not None and cont.start == "branch" else read.commit_sha or ""

    # Dated when the change was made (the worker's finish, never later than now), not by the run's logical date.
    made_at = min(result.finished_at, datetime.now(UTC)).isoformat()
    with tempfile.TemporaryDirectory(prefix="leviathan-pr-", dir=scratch_dir) as tmp:
        path = Path(tmp) / "repo.git"
        run_git(["init", "--quiet", "--bare", str(path)])
        repo = _Repo(path, {"GIT_INDEX_FILE": str(Path(tmp) / "index"),
                            "GIT_AUTHOR_DATE": made_at, "GIT_COMMITTER_DATE": made_at})
        on_branch = cont is not None and cont.start == "branch"
        # On the branch: its tip and the parent, which is the start again when a rerun finds its own commit.
        wanted, depth = (f"refs/heads/{cont.branch}", "2") if cont is not None and on_branch else (start, "1")
        try:
            run_git(["fetch", "--quiet", "--no-tags", "--depth", depth, "--", read.repo_url, wanted], cwd=path,
                    env=forge.git_push_env())
        except GitError as exc:
            if cont is None:
                raise
            raise _lease_problem(forge, cont, f"cannot fetch {cont.branch}: {redact_text(exc.stderr)}") from None
        if cont is not None and on_branch and start not in _tip_and_parent(repo):
            raise _lease_problem(forge, cont, "the branch moved after the attempt started")
        env = forge.git_push_env()
        earlier = _fetched_tip(repo, read, cont.branch if cont is not None else plan.branch, env,
                               fetched=on_branch)
        built = _build(target, read, plan, result, repo, start=start, run_id=run_id,
                       evidence_summary=evidence_summary, earlier=earlier)
        if cont is not None:
            return _deliver_to_open_pr(forge, read, cont, built, path)
        existing = forge.find_pr_by_head(plan.branch)
        if existing is not None:
            return Delivery(pr=existing, changed_paths=built.changed_paths)
        _push_new_branch(repo, read, plan.branch, built.head_sha, earlier=earlier, env=env)

    if target.pr_creation == "checks_pass":  # a later cycle opens the PR once CI on this head passes
        return Delivery(pr=None, changed_paths=built.changed_paths, held=_held(built))
    pr = forge.create_pr(head=plan.branch, base=target.target_branch, title=built.title, body=built.body)
    return Delivery(pr=pr, changed_paths=built.changed_paths)


def _held(built: _Built) -> Held:
    return Held(head_sha=built.head_sha, title=built.title, body=built.body)


def _build(target: TargetConfig, read: ReadResult, plan: AttemptPlan, result: AttemptResult, repo: _Repo, *,
           start: str, run_id: str, evidence_summary: dict[str, Any], earlier: str | None = None) -> _Built:
    """Apply the patch on ``start``, check the final diff, add the status edit, commit (objects only); or take
    ``earlier`` when it is that very commit, as an earlier run of this delivery made and pushed it."""
    backlog, _ = read.parsed_backlog()
    task = backlog.by_id()[plan.task_id]
    scope = task_scope(task.allowed_paths, target.allowed_path_prefixes)
    worker_tree = _apply(repo, start, result.patch)
    real = [redact_text(p) for p in changed_paths(repo.path, start, worker_tree)]
    protected = protected_for(target, read.recipes_text)
    violations = check_final_diff(repo.path, start, worker_tree, scope, protected=protected,
                                  backlog_path=read.backlog_path)
    if violations:
        detail = "; ".join(f"{v.code}: {v.path or ''} {v.detail}".strip() for v in violations)
        raise DeliveryRejected(violations[0].code, f"final diff rejected: {detail}", real)

    status_note = ""
    pinned_backlog = None
    on_branch = plan.continue_pr is not None and plan.continue_pr.start == "branch"
    if on_branch:
        status_note = f"the status in {read.backlog_path} was set by the PR's first commit."
    elif Scope.of(target.allowed_path_prefixes).contains(read.backlog_path):
        pinned_backlog = _set_status(repo, start, read.backlog_path, task.id)
    else:
        status_note = f"{read.backlog_path} is outside allowed_path_prefixes, so its status was not edited."
    tree = repo.git(["write-tree"])
    message = (f"{task.title}\n\nLeviathan-Task: {task.id}\nLeviathan-Attempt: {plan.attempt}\n"
               f"Leviathan-Run: {run_id}\n")
    if plan.continue_pr is not None:
        message += f"Leviathan-Continues: #{plan.continue_pr.number} ({plan.continue_pr.why})\n"
    head_sha = _made_earlier(repo, earlier, start, tree, message) or repo.git(
        ["commit-tree", tree, "-p", start, "-F", "-"], input=message)
    # What is pushed: the worker's paths plus, at most, Leviathan's own one-line status edit.
    delivered = changed_paths(repo.path, start, head_sha)
    if pinned_backlog is not None:
        try:
            check_status_edit(pinned_backlog, repo.blob(f"{head_sha}:{read.backlog_path}"), task.id,
                              DELIVERED_STATUS)
        except ValueError as exc:
            raise DeliveryRejected("backlog_edited", f"{read.backlog_path}: {exc}", real) from None
    if set(delivered) - set(real) - {read.backlog_path}:
        raise DeliveryRejected("backlog_edited", "the delivered commit changes more than the checked tree", real)

    title = f"[leviathan] {task.title}"
    worker_paths = [p for p in delivered if p != read.backlog_path]
    body = render_pr_body(task=task, plan=plan, read=read, changed_paths=worker_paths, run_id=run_id,
                          evidence=evidence_summary, note=status_note, head_sha=head_sha,
                          checked=checks_section(result.checks, result.checks_red_at_base))
    _scan_pr_text(title, body)
    return _Built(head_sha=head_sha, changed_paths=delivered, title=title, body=body)


def _fetched_tip(repo: _Repo, read: ReadResult, branch: str, env: dict[str, str], *, fetched: bool) -> str | None:
    """The branch's tip on the forge (None when absent), where a rerun of this delivery (a cleared run) may
    have pushed already; ``fetched`` when the branch was fetched as the attempt's start."""
    if fetched:
        return _tip_and_parent(repo)[0]
    try:
        run_git(["fetch", "--quiet", "--no-tags", "--depth", "1", "--", read.repo_url, f"refs/heads/{branch}"],
                cwd=repo.path, env=env)
    except GitError:
        return None  # gone (or unreachable: the push that follows says which)
    return repo.git(["rev-parse", "FETCH_HEAD"])


def _push_new_branch(repo: _Repo, read: ReadResult, branch: str, head_sha: str, *, earlier: str | None,
                     env: dict[str, str]) -> None:
    """Create ``branch`` at ``head_sha``, never over someone else's commit: the push's lease expects no branch.

    A branch that already holds this very commit is this delivery's own earlier push (a rerun); any other
    commit there is not Leviathan's to overwrite (``branch_exists``), PR or no PR.
    """
    if earlier == head_sha:
        return
    if earlier is not None:
        raise DeliveryRejected("branch_exists", f"{branch} already exists at {earlier}, which Leviathan did not "
                                                 "push for this attempt; nothing was overwritten")
    ref = f"refs/heads/{branch}"
    try:
        run_git(["push", "--quiet", "--porcelain", f"--force-with-lease={ref}:", "--", read.repo_url,
                 f"{head_sha}:{ref}"], cwd=repo.path, env=env)
    except GitError:
        tip = _fetched_tip(repo, read, branch, env, fetched=False)
        if tip is not None and tip != head_sha:
            raise DeliveryRejected("branch_exists", f"{branch} was created at {tip} while Leviathan pushed; "
                                                     "nothing was overwritten") from None
        raise


def _made_earlier(repo: _Repo, candidate: str | None, parent: str, tree: str, message: str) -> str | None:
    """``candidate`` when it is the commit about to be made, made before: same parent, tree and message (which
    names the run and attempt) by Leviathan's identity, only dated earlier. A rerun then pushes nothing new,
    instead of meeting its own push and taking it for a human's."""
    if not candidate or candidate == parent:
        return None
    header, _, body = repo.git(["cat-file", "commit", candidate]).partition("\n\n")
    fields = [line.partition(" ")[::2] for line in header.splitlines()]
    who = f"{IDENTITY['GIT_AUTHOR_NAME']} <{IDENTITY['GIT_AUTHOR_EMAIL']}> "
    ours = [k for k, v in fields[2:]] == ["author", "committer"] and all(v.startswith(who) for _, v in fields[2:])
    same = fields[:2] == [("tree", tree), ("parent", parent)] and ours and body.strip() == message.strip()
    return candidate if same else None


def _tip_and_parent(repo: _Repo) -> tuple[str, ...]:
    """The fetched tip and its first parent (none for a root commit)."""
    out = repo.git(["rev-list", "--max-count=1", "--parents", "FETCH_HEAD", "--"]).split()
    return tuple(out[:2])


def _lease_problem(forge: Forge, cont: ContinuePr, detail: str) -> DeliveryRejected:
    """Why the PR's branch may not be pushed to: someone else pushed to it, or deleted it, or the forge failed."""
    try:
        tip = forge.branch_sha(cont.branch)
    except ForgeError as exc:
        return DeliveryRejected("forge_error", f"{detail}; the branch cannot be read: {exc}")
    if tip is None:
        what = f"PR #{cont.number}" if cont.number is not None else "it"
        return DeliveryRejected(PR_BRANCH_DELETED, f"{cont.branch} was deleted; Leviathan leaves {what} alone")
    if tip != cont.head_sha:
        return DeliveryRejected(HUMAN_EDITED, f"someone else pushed {tip} to {cont.branch} (Leviathan pushed "
                                              f"{cont.head_sha}); nothing was rewritten")
    return DeliveryRejected("push_failed", detail)


def _deliver_to_open_pr(forge: Forge, read: ReadResult, cont: ContinuePr, built: _Built, repo: Path) -> Delivery:
    """Push to the branch of the open PR ``cont`` with a lease on Leviathan's last push, then refresh its body.

    The lease is git's own (``--force-with-lease=<branch>:<head>``, checked by the receiving side under its
    ref lock), so a push someone made in between is never overwritten. With ``start: branch`` the new
    commit's parent is that head: a fast-forward. A rerun finds its own commit already there. A branch whose
    PR is not open yet (``cont.number`` None: it waits for green CI) is pushed the same way and stays held.
    The body is rewritten on every update (it names the attempt and the head commit).
    """
    if cont.number is None:
        try:
            tip = forge.branch_sha(cont.branch)
        except ForgeError as exc:
            raise DeliveryRejected("forge_error", f"{cont.branch} cannot be read: {exc}") from None
        _push_with_lease(forge, read, cont, built, repo, tip=tip)
        return Delivery(pr=None, changed_paths=built.changed_paths, held=_held(built))
    try:
        pr = forge.get_pr(cont.number)
    except ForgeError as exc:
        raise DeliveryRejected("forge_error", f"PR #{cont.number} cannot be read: {exc}") from None
    if pr.state != "open" or pr.head != cont.branch:
        raise DeliveryRejected("pr_not_open", f"PR #{cont.number} is {pr.state} (head {pr.head}); "
                                              "Leviathan opens no other PR for it")
    _push_with_lease(forge, read, cont, built, repo, tip=pr.head_sha)
    note = ""
    try:  # the body describes the new head: attempt, commit, checks, approval
        pr = forge.update_pr(cont.number, body=built.body)
    except ForgeError as exc:  # pushed all the same: the evidence records the new head and why
        note = f"{PR_BODY_NOT_UPDATED}: {exc}"
    pr = pr.model_copy(update={"head_sha": built.head_sha})
    return Delivery(pr=pr, changed_paths=built.changed_paths, note=note)


def _push_with_lease(forge: Forge, read: ReadResult, cont: ContinuePr, built: _Built, repo: Path, *,
                     tip: str | None) -> None:
    """Push the built head to ``cont.branch`` unless ``tip`` (the branch now) is it already (a rerun)."""
    ref = f"refs/heads/{cont.branch}"
    if tip != built.head_sha:
        try:
            run_git(["push", "--quiet", "--porcelain", f"--force-with-lease={ref}:{cont.head_sha}", "--",
                     read.repo_url, f"{built.head_sha}:{ref}"], cwd=repo, env=forge.git_push_env())
        except GitError as exc:
            raise _lease_problem(forge, cont, f"push to {cont.branch} failed: {redact_text(exc.stderr)}") from None
