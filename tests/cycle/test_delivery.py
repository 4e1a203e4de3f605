"""Delivery re-checks the worker's claims on the final diff and is idempotent: one branch, one PR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leviathan_lib.contracts.attempt import AttemptResult, AttemptSpec
from leviathan_lib.contracts.xcom import AttemptPlan
from leviathan_lib.core.config import load_target
from leviathan_lib.cycle import steps as cycle
from leviathan_lib.cycle.decision import DecisionInputs, build_decision
from leviathan_lib.cycle.delivery import DeliveryRejected, deliver
from leviathan_lib.demo import create_demo_target
from leviathan_lib.forge.local import LocalForge
from leviathan_lib.git.runner import run_git
from leviathan_lib.worker.backends.local import run_local_worker
from tests.airflow_helpers import commit_file


def _prepare(tmp_path, backlog_edit=None):
    """A demo target read and decided as a cycle would, with the worker already run."""
    target_file = create_demo_target(tmp_path, target_id="deliver")
    if backlog_edit:
        bare = tmp_path / "repos" / "deliver.git"
        text = run_git(["--git-dir", str(bare), "show", "main:.leviathan/backlog.yaml"]).stdout
        commit_file(bare, tmp_path / "human", ".leviathan/backlog.yaml", backlog_edit(text), "human edit")
    target = load_target(target_file)
    repo_url = target.repo_location(target_file)
    read = cycle.read_backlog(target, repo_url, tmp_path / "cache")
    guard = build_decision(DecisionInputs(target=target, read=read))
    plan = guard.attempt
    backlog, _ = read.parsed_backlog()
    spec = AttemptSpec.model_validate({
        "spec_version": 1, "target_id": target.target_id, "repo_url": repo_url, "commit_sha": read.commit_sha,
        "task": backlog.by_id()[plan.task_id].model_dump(mode="json"),
        "allowed_path_prefixes": target.allowed_path_prefixes,
        "executor": {"kind": "recipe", "recipe": plan.recipe}, "attempt": plan.attempt, "timeout_seconds": 60,
    })
    result = run_local_worker(spec, workspace_root=tmp_path / "ws")
    assert result.outcome == "succeeded", result.error
    return target, read, plan, result, LocalForge(repo_url), tmp_path


@pytest.fixture
def prepared(tmp_path):
    return _prepare(tmp_path)


def _deliver(target, read, plan, result, forge, tmp_path):
    return deliver(target, read, plan, result, forge, run_id="run-1",
                   evidence_summary={"target_id": target.target_id, "checks": []}, scratch_dir=tmp_path).pr


def test_rerunning_delivery_returns_the_same_pr(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    first = _deliver(target, read, plan, result, forge, tmp_path)
    again = _deliver(target, read, plan, result, forge, tmp_path)
    assert (first.number, again.number) == (1, 1)
    assert [p.number for p in forge.list_prs()] == [1]


def test_crash_after_push_before_pr_creates_exactly_one_pr_on_rerun(prepared, monkeypatch):
    target, read, plan, result, forge, tmp_path = prepared

    def crash(**_kwargs):
        raise RuntimeError("killed between push and PR creation")

    monkeypatch.setattr(forge, "create_pr", crash)
    with pytest.raises(RuntimeError):
        _deliver(target, read, plan, result, forge, tmp_path)
    pushed = run_git(["--git-dir", str(forge.path), "rev-parse", f"refs/heads/{plan.branch}"]).stdout.strip()
    monkeypatch.undo()
    pr = _deliver(target, read, plan, result, forge, tmp_path)
    assert pr.number == 1 and len(forge.list_prs()) == 1
    # The commit is deterministic (same dates, same content), so the rerun pushed the very same commit.
    assert pr.head_sha == pushed


def test_a_branch_someone_else_made_before_any_pr_is_never_force_pushed(prepared):
    """The agent branch is created with a lease expecting no branch: a human's commit there (no PR yet) stays."""
    target, read, plan, result, forge, tmp_path = prepared
    bare = forge.path
    work = tmp_path / "human-branch"
    commit_file(bare, work, "docs/notes.md", "a human's work\n", "human work")
    run_git(["push", "--quiet", "origin", f"HEAD:refs/heads/{plan.branch}"], cwd=work)
    theirs = run_git(["--git-dir", str(bare), "rev-parse", f"refs/heads/{plan.branch}"]).stdout.strip()
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, result, forge, tmp_path)
    assert exc.value.code == "branch_exists" and theirs in str(exc.value)
    assert run_git(["--git-dir", str(bare), "rev-parse", f"refs/heads/{plan.branch}"]).stdout.strip() == theirs
    assert forge.list_prs() == []


def _commit_dates(forge, sha: str) -> tuple[datetime, datetime, str]:
    out = run_git(["--git-dir", str(forge.path), "log", "-1", "--format=%aI%n%cI%n%an <%ae>", sha]).stdout.split("\n")
    return datetime.fromisoformat(out[0]), datetime.fromisoformat(out[1]), out[2]


def test_the_agent_commit_is_dated_when_it_was_made_not_by_the_run(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    days_ago = datetime.now(UTC) - timedelta(days=3)  # a run whose run_after (logical date) is days ago
    pr = deliver(target, read, plan, result, forge, run_id=f"scheduled__{days_ago.isoformat()}", scratch_dir=tmp_path,
                 evidence_summary={"target_id": target.target_id, "checks": []}).pr
    authored, committed, who = _commit_dates(forge, pr.head_sha)
    assert authored == committed == result.finished_at.replace(microsecond=0)  # the worker made it moments ago
    assert datetime.now(UTC) - timedelta(minutes=5) < authored <= datetime.now(UTC)
    assert who == "Leviathan <leviathan@localhost>"  # the git runner's fixed identity


def test_a_worker_claiming_a_future_finish_gets_a_commit_dated_now(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    future = result.model_copy(update={"finished_at": datetime.now(UTC) + timedelta(days=400)})
    pr = _deliver(target, read, plan, future, forge, tmp_path)
    authored, committed, _ = _commit_dates(forge, pr.head_sha)
    assert authored == committed <= datetime.now(UTC)


def _forged(result: AttemptResult, patch: str, paths: list[str]) -> AttemptResult:
    return result.model_copy(update={"patch": patch, "changed_paths": paths})


SYMLINK_PATCH = """diff --git a/docs/quickstart.md b/docs/quickstart.md
new file mode 120000
index 0000000..1111111
--- /dev/null
+++ b/docs/quickstart.md
@@ -0,0 +1 @@
+/etc/passwd
\\ No newline at end of file
"""


def test_final_diff_rejects_a_symlink_the_worker_did_not_report(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, _forged(result, SYMLINK_PATCH, ["docs/quickstart.md"]), forge, tmp_path)
    assert exc.value.code == "symlink"
    assert forge.list_prs() == []
    assert run_git(["--git-dir", str(forge.path), "branch", "--list", "agent/*"]).stdout == ""


def test_out_of_scope_paths_claimed_by_the_worker_are_rejected_before_anything_is_pushed(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    patch = result.patch.replace("docs/quickstart.md", "docs2/quickstart.md")
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, _forged(result, patch, ["docs2/quickstart.md"]), forge, tmp_path)
    assert exc.value.code == "scope_violation" and "docs2/quickstart.md" in str(exc.value)
    assert forge.list_prs() == []




# --- a hostile worker: every claim is checked against git's objects ---------------------------

TOKEN = "ghp_" + "aB3d" * 9  # the github_token shape, assembled so this file holds none verbatim


def _docs_scope(text: str) -> str:
    """The human gives docs-quickstart the whole docs/ folder (so odd names under docs/ are in scope)."""
    return text.replace('      - "docs/quickstart.md"', '      - "docs/"', 1)


@pytest.fixture
def docs_scope(tmp_path):
    return _prepare(tmp_path, _docs_scope)


def _craft(forge, tmp_path, change, *, staged=None, name="craft") -> str:
    """A patch as a worker would produce it: a clone of the pinned commit, changed, staged, diffed."""
    work = tmp_path / name
    run_git(["clone", "--quiet", str(forge.path), str(work)])
    change(work)
    run_git(["add", "-A"], cwd=work)
    if staged:
        staged(work)
    return run_git(["diff", "--cached", "--binary", "--full-index", "--no-renames"], cwd=work).stdout


def _write(rel: str, data: bytes | str):
    def change(work):
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return change


def _both(*changes):
    def change(work):
        for c in changes:
            c(work)
    return change


def _assert_rejected(exc, code, forge, *secrets):
    assert exc.value.code == code, str(exc.value)
    assert forge.list_prs() == []
    assert run_git(["--git-dir", str(forge.path), "branch", "--list", "agent/*"]).stdout == ""
    for secret in (TOKEN, *secrets):
        assert secret not in str(exc.value) and secret not in " ".join(exc.value.changed_paths)


def _reject(prepared, patch, claimed=("docs/quickstart.md",)):
    target, read, plan, result, forge, tmp_path = prepared
    with pytest.raises(DeliveryRejected) as exc:
        _deliver(target, read, plan, _forged(result, patch, list(claimed)), forge, tmp_path)
    return exc


def test_a_secret_behind_a_nul_byte_is_found(docs_scope):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    patch = _craft(forge, tmp_path, _write("docs/quickstart.md", b"# Quickstart\n\0\n" + TOKEN.encode() + b"\n"))
    assert "GIT binary patch" in patch and TOKEN not in patch  # git's diff text never shows it
    exc = _reject(docs_scope, patch)
    _assert_rejected(exc, "secret_detected", forge)
    assert "github_token" in str(exc.value)


@pytest.mark.parametrize("attributes", ["*.md -diff\n", "*.md binary\n"])
def test_a_gitattributes_file_cannot_hide_a_secret_or_be_delivered(docs_scope, attributes):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    change = _both(_write("docs/.gitattributes", attributes), _write("docs/quickstart.md", f"key: {TOKEN}\n"))
    patch = _craft(forge, tmp_path, change)
    assert TOKEN not in patch
    _assert_rejected(_reject(docs_scope, patch), "secret_detected", forge)
    # Without the secret, the attributes file itself is refused: it changes how git treats other files.
    clean = _craft(forge, tmp_path, _write("docs/.gitattributes", attributes), name="clean")
    _assert_rejected(_reject(docs_scope, clean, ["docs/.gitattributes"]), "protected_path", forge)


def test_a_human_committed_gitattributes_does_not_hide_a_new_secret(tmp_path):
    def with_attributes(text):
        bare = tmp_path / "repos" / "deliver.git"
        commit_file(bare, tmp_path / "human2", "docs/.gitattributes", "*.md -diff\n", "docs are not diffed")
        return _docs_scope(text)

    prepared = _prepare(tmp_path, with_attributes)
    forge = prepared[4]
    patch = _craft(forge, tmp_path, _write("docs/quickstart.md", f"# Quickstart\n{TOKEN}\n"))
    _assert_rejected(_reject(prepared, patch), "secret_detected", forge)


def test_a_symlinked_backlog_never_makes_delivery_write_or_read_outside(docs_scope):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    outside = tmp_path / "outside.txt"
    outside.write_text("confidential line one\ntasks: []\n")

    def link(work):
        (work / ".leviathan" / "backlog.yaml").unlink()
        (work / ".leviathan" / "backlog.yaml").symlink_to(outside)

    patch = _craft(forge, tmp_path, _both(link, _write("docs/quickstart.md", "# Quickstart\n")))
    exc = _reject(docs_scope, patch, ["docs/quickstart.md"])
    _assert_rejected(exc, "backlog_edited", forge, "confidential")
    assert "symlink" in str(exc.value)
    assert outside.read_text() == "confidential line one\ntasks: []\n"


def test_a_secret_in_a_file_name_is_refused_and_never_repeated(docs_scope):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    patch = _craft(forge, tmp_path, _write(f"docs/{TOKEN}.md", "harmless\n"))
    exc = _reject(docs_scope, patch, [f"docs/{TOKEN}.md"])
    _assert_rejected(exc, "secret_detected", forge)
    assert "github_token" in str(exc.value)


def test_markdown_and_html_in_file_names_are_inert_in_the_pr_body(docs_scope):
    from markdown_it import MarkdownIt

    target, read, plan, result, forge, tmp_path = docs_scope
    names = ["docs/[click](https:evil.example)![x](https:evil.example)<img src=x onerror=alert(1)>.md",
             "docs/`tick` and ``two``.md", "docs/<b>bold</b> @admin #1.md"]
    change = _both(*(_write(n, "hello\n") for n in names))
    patch = _craft(forge, tmp_path, change)
    pr = _deliver(target, read, plan, _forged(result, patch, ["docs/claimed-only.md"]), forge, tmp_path)
    html = MarkdownIt("commonmark").render(pr.body)
    assert "<a " not in html and "<img" not in html and "<b>" not in html
    changes = pr.body.split("## Changes")[1].split("## Evidence")[0]
    rendered = MarkdownIt("commonmark").render(changes)
    for name in names:  # each name is one code span holding exactly the name
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        assert f"<code>{escaped}</code>" in rendered, name
    assert "claimed-only" not in pr.body  # the list is git's, not the worker's claim


def test_the_change_list_and_paths_come_from_the_real_diff(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    lying = _forged(result, result.patch, ["docs/quickstart.md", "docs/not-in-the-patch.md"])
    delivery = deliver(target, read, plan, lying, forge, run_id="run-1",
                       evidence_summary={"target_id": target.target_id, "checks": []}, scratch_dir=tmp_path)
    assert delivery.changed_paths == [".leviathan/backlog.yaml", "docs/quickstart.md"]
    assert "not-in-the-patch" not in delivery.pr.body


def test_a_worker_hiding_an_out_of_scope_path_behind_its_claims_is_rejected(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    patch = _craft(forge, tmp_path, _both(_write("docs/quickstart.md", "# Q\n"), _write("README.md", "pwned\n")))
    exc = _reject(prepared, patch, ["docs/quickstart.md"])
    _assert_rejected(exc, "scope_violation", forge)
    assert exc.value.changed_paths == ["README.md", "docs/quickstart.md"]


def _hand_plan(read, task_id="docs-quickstart"):
    backlog, _ = read.parsed_backlog()
    task = backlog.by_id()[task_id]
    return AttemptPlan(task_id=task_id, attempt=1, branch=f"agent/{task_id}/1",
                             task_hash=task.definition_hash(), recipe=task.recipe or "")


@pytest.mark.parametrize("path", [".leviathan/recipes.yaml", ".leviathan/recipes/write_doc.py"])
def test_the_recipes_and_their_scripts_are_protected_even_under_an_allowed_prefix(tmp_path, path):
    def leviathan_in_scope(text):
        return text.replace('      - "docs/quickstart.md"', '      - "docs/quickstart.md"\n      - ".leviathan/"', 1)

    target, read, plan, result, forge, tmp_path = _prepare(tmp_path, leviathan_in_scope)
    guard = build_decision(DecisionInputs(target=target, read=read))
    verdicts = {v.id: v.reasons for v in guard.decision.tasks}
    assert verdicts["docs-quickstart"] == ["protected_path"]  # the task itself is not run
    patch = _craft(forge, tmp_path, _write(path, "recipes: {}\n"))
    with pytest.raises(DeliveryRejected) as exc:  # and were it run, its diff would not be delivered
        _deliver(target, read, _hand_plan(read), _forged(result, patch, [path]), forge, tmp_path)
    _assert_rejected(exc, "protected_path", forge)


@pytest.mark.parametrize("path", ["docs/.github/workflows/ci.yml", "docs/.gitmodules", "docs/sub/.GITATTRIBUTES"])
def test_forge_and_git_control_files_are_protected_anywhere(docs_scope, path):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    patch = _craft(forge, tmp_path, _write(path, "on: push\n"))
    _assert_rejected(_reject(docs_scope, patch, [path]), "protected_path", forge)


def test_the_targets_protected_paths_are_protected(tmp_path):
    prepared = _prepare(tmp_path, _docs_scope)
    target = prepared[0].model_copy(update={"protected_paths": ["docs/theme/"]})
    patch = _craft(prepared[4], tmp_path, _write("docs/theme/site.css", "body {}\n"))
    _assert_rejected(_reject((target, *prepared[1:]), patch, ["docs/theme/site.css"]), "protected_path", prepared[4])


def test_a_gitlink_is_refused(docs_scope):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    sha = run_git(["--git-dir", str(forge.path), "rev-parse", "main"]).stdout.strip()

    def gitlink(work):
        run_git(["update-index", "--add", "--cacheinfo", f"160000,{sha},docs/vendored"], cwd=work)

    patch = _craft(forge, tmp_path, lambda work: None, staged=gitlink)
    assert "Subproject commit" in patch
    _assert_rejected(_reject(docs_scope, patch, ["docs/vendored"]), "submodule", forge)


def test_an_oversized_patch_is_refused_before_it_is_applied(docs_scope):
    forge, tmp_path = docs_scope[4], docs_scope[5]
    patch = _craft(forge, tmp_path, _write("docs/quickstart.md", "line of text\n" * 100_000))
    assert len(patch) > 1_200_000
    exc = _reject(docs_scope, patch)
    _assert_rejected(exc, "patch_too_large", forge)
    assert not list(tmp_path.glob("leviathan-pr-*"))  # no scratch repository was even created


def _git_binary_literal(path: str, data: bytes) -> str:
    """A ``GIT binary patch`` creating ``path`` (git's base85 + zlib format)."""
    import base64
    import zlib

    packed = zlib.compress(data, 9)
    lines = []
    for i in range(0, len(packed), 52):
        chunk = packed[i:i + 52]
        size = chr(ord("A") + len(chunk) - 1) if len(chunk) <= 26 else chr(ord("a") + len(chunk) - 27)
        padded = chunk + b"\0" * (-len(chunk) % 4)
        lines.append(size + base64.b85encode(padded).decode())
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
            f"GIT binary patch\nliteral {len(data)}\n" + "\n".join(lines) + "\n\nliteral 0\nHcmV?d00001\n\n")


def test_a_small_patch_that_inflates_to_a_huge_file_is_refused_before_it_is_applied(docs_scope):
    forge = docs_scope[4]
    patch = _git_binary_literal("docs/zeros.bin", bytes(64 << 20))  # 64 MiB of zeros in ~90 KB of patch
    assert len(patch) < 200_000
    exc = _reject(docs_scope, patch, ["docs/zeros.bin"])
    _assert_rejected(exc, "patch_too_large", forge)
    assert "inflates to 67108864 bytes" in str(exc.value)


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("# Humans write this file.", "# Humans wrote this file."),  # a comment
    lambda t: t.replace("ready: false", "ready: true", 1),  # another task's key
    lambda t: t.replace("status: pending", "status: completed", 1),  # even the worker's own status
    lambda t: t + "\n",  # a blank line
], ids=["comment", "other-key", "own-status", "whitespace"])
def test_a_worker_that_touches_the_backlog_at_all_is_rejected(tmp_path, edit):
    # The demo target has .leviathan/ in allowed_path_prefixes: the backlog is in the target's scope.
    target, read, plan, result, forge, tmp_path = _prepare(tmp_path)

    def change(work):
        backlog = work / ".leviathan" / "backlog.yaml"
        backlog.write_text(edit(backlog.read_text()))
        _write("docs/quickstart.md", "# Quickstart\n")(work)

    patch = _craft(forge, tmp_path, change)
    exc = _reject((target, read, plan, result, forge, tmp_path), patch)
    _assert_rejected(exc, "backlog_edited", forge, "Humans")


def test_the_delivered_backlog_differs_from_the_pinned_one_in_the_status_line_only(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    pr = _deliver(target, read, plan, result, forge, tmp_path)
    pinned = run_git(["--git-dir", str(forge.path), "show", f"{read.commit_sha}:.leviathan/backlog.yaml"]).stdout
    delivered = run_git(["--git-dir", str(forge.path), "show", f"{pr.head_sha}:.leviathan/backlog.yaml"]).stdout
    changed = [(a, b) for a, b in zip(pinned.split("\n"), delivered.split("\n"), strict=True) if a != b]
    assert changed == [("    status: pending", "    status: completed")]


def test_a_patch_that_does_not_apply_is_rejected_without_quoting_it(prepared):
    target, read, plan, result, forge, tmp_path = prepared
    patch = result.patch.replace("+", "+" + "ghost line\n+", 1).replace("@@ -0,0 +1,", "@@ -1,2 +1,", 1)
    bogus = ("diff --git a/docs/index.md b/docs/index.md\n--- a/docs/index.md\n+++ b/docs/index.md\n"
             "@@ -1 +1 @@\n-not what the file says\n+private words\n")
    for text in (bogus, patch):
        with pytest.raises(DeliveryRejected) as exc:
            _deliver(target, read, plan, _forged(result, text, ["docs/index.md"]), forge, tmp_path)
        assert exc.value.code == "patch_does_not_apply"
        assert "private words" not in str(exc.value) and "not what the file says" not in str(exc.value)
    assert forge.list_prs() == []
