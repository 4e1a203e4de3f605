"""The status edit must change one value, on one line, and nothing else in the human's file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leviathan_lib.core.backlog import parse_backlog
from leviathan_lib.core.backlog_edit import check_status_edit, set_task_status

ORIGINAL = Path(__file__).resolve().parents[1] / "fixtures" / "original" / "backlog.yaml"

STYLED = """\
# Backlog — humans edit this file; Leviathan only sets a task's status in its PR.
tasks:
  # The first task already has a status.
  - id: docs-quickstart   # keep this comment
    title: "Write the quickstart"
    status: pending  # set by humans
    description: |
      Explain how to run the demo.

      Keep it short: one page.
    ready: true
    allowed_paths: ["docs/quickstart.md"]

  - title: 'Quoted status, id not first'
    id: "docs-faq"
    status: "pending"
    ready: false

  - id: docs-empty
    title: Empty status
    status:
    ready: false

metadata:
  version: "1.0"
"""


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [line for line in old if line not in new], [line for line in new if line not in old]


def tasks_with_status(text: str, task_id: str, status: str) -> list:
    backlog, problems = parse_backlog(text)
    assert not problems
    return [t.model_copy(update={"status": status}) if t.id == task_id else t for t in backlog.tasks]


def assert_only_status_changed(before: str, after: str, task_id: str, status: str) -> None:
    assert parse_backlog(after)[0].tasks == tasks_with_status(before, task_id, status)
    assert parse_backlog(after)[0].metadata == parse_backlog(before)[0].metadata
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    if len(new) == len(old):
        unchanged = parse_backlog(before)[0].by_id()[task_id].status == status
        assert sum(a != b for a, b in zip(old, new, strict=True)) == (
            0 if unchanged and before == after else 1
        )
    else:
        # Compare lines without their endings: inserting after a last line that has no final newline
        # must give that line one (the delivery's byte check accepts exactly this).
        old, new = before.splitlines(), after.splitlines()
        assert len(new) == len(old) + 1
        inserted = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), len(old))
        assert new[:inserted] + new[inserted + 1 :] == old
        id_line, line = new[inserted - 1], new[inserted]
        assert f"id: {task_id}" in id_line.replace('"', "")
        assert len(line) - len(line.lstrip(" ")) == id_line.index("id:")
        assert new[inserted].strip() == f"status: {status}" or new[inserted].strip() == f'status: "{status}"'


def test_original_backlog_gets_one_inserted_line_at_the_id_indentation():
    text = ORIGINAL.read_text()
    edited = set_task_status(text, "readme-autonomy-badge", "completed")
    assert_only_status_changed(text, edited, "readme-autonomy-badge", "completed")
    removed, added = changed_lines(text, edited)
    assert removed == []
    assert added == ["    status: completed\n"]
    assert "  - id: readme-autonomy-badge\n    status: completed\n    title:" in edited


def test_existing_values_are_replaced_in_place_keeping_comments_and_quotes():
    edited = set_task_status(STYLED, "docs-quickstart", "completed")
    assert changed_lines(STYLED, edited) == (
        ["    status: pending  # set by humans\n"],
        ["    status: completed  # set by humans\n"],
    )
    quoted = set_task_status(STYLED, "docs-faq", "completed")
    assert changed_lines(STYLED, quoted) == (['    status: "pending"\n'], ['    status: "completed"\n'])
    empty = set_task_status(STYLED, "docs-empty", "done")
    assert changed_lines(STYLED, empty) == (["    status:\n"], ["    status: done\n"])
    for task_id, edit in (("docs-quickstart", edited), ("docs-faq", quoted)):
        assert_only_status_changed(STYLED, edit, task_id, "completed")


def test_values_yaml_would_misread_are_quoted():
    edited = set_task_status(STYLED, "docs-quickstart", "true")
    assert '    status: "true"  # set by humans\n' in edited
    assert parse_backlog(edited)[0].by_id()["docs-quickstart"].status == "true"


def test_crlf_and_missing_trailing_newline_are_kept():
    text = "tasks:\r\n  - id: a\r\n    title: A\r\n  - id: b\r\n    title: B"
    assert (
        set_task_status(text, "a", "done")
        == "tasks:\r\n  - id: a\r\n    status: done\r\n    title: A\r\n  - id: b\r\n    title: B"
    )
    assert (
        set_task_status("tasks:\n- title: B\n  id: b", "b", "done")
        == "tasks:\n- title: B\n  id: b\n  status: done"
    )


@pytest.mark.parametrize(
    ("text", "task_id", "status", "message"),
    [
        ("tasks:\n  - id: a\n    title: A\n", "b", "done", "not in the backlog"),
        ("tasks:\n  - id: a\n    title: A\n  - id: a\n    title: B\n", "a", "done", "appears 2 times"),
        ("tasks:\n  - {id: a, title: A}\n", "a", "done", "flow style"),
        ("tasks: [{id: a, title: A}]\n", "a", "done", "flow style"),
        ("tasks:\n  - id: a\n    title: A\n", "a", "done\nready: true", "short word"),
        ("tasks:\n  - id: a\n    title: A\n", "a", "", "short word"),
        ("tasks:\n  - id: a\n    status: |\n      x\n", "a", "done", "not a one-line value"),
        ("tasks:\n  - id: a\n    status: x\n    status: y\n", "a", "done", "more than one 'status'"),
        ("tasks:\n  - id: 1\n", "1", "done", "not in the backlog"),
        ("metadata: {}\n", "a", "done", "no 'tasks:' list"),
        ("tasks: [\n", "a", "done", "not valid YAML"),
    ],
)
def test_refusals(text, task_id, status, message):
    with pytest.raises(ValueError, match=message):
        set_task_status(text, task_id, status)


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
SENTENCE = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789.:#'\"-", min_size=1, max_size=8),
    min_size=1,
    max_size=6,
).map(" ".join)
STATUS = st.sampled_from(["completed", "done", "in progress", "pending", "true", "null", "1.0", "blocked"])


@st.composite
def styled_task(draw, task_id: str, pad: str) -> list[str]:
    """One task in the original style, with the stylistic variations humans use."""
    title = "T " + draw(SENTENCE).replace('"', "").replace("'", "")
    quote = draw(st.sampled_from(['"', "'"]))
    id_comment = draw(st.sampled_from(["", "  # why this task"]))
    lines = {
        "id": f"id: {draw(st.sampled_from(['', chr(34)]))}{task_id}",
        "title": f"title: {quote}{title}{quote}",
        "description": "description: |\n"
        + "\n".join(f"{pad}  {draw(SENTENCE)}" for _ in range(draw(st.integers(1, 3)))),
        "priority": f"priority: {draw(st.sampled_from(['high', 'medium', 'low']))}",
        "ready": f"ready: {draw(st.sampled_from(['true', 'false']))}",
        "allowed_paths": f'allowed_paths:\n{pad}  - "docs/{draw(WORD)}.md"',
    }
    lines["id"] += chr(34) if lines["id"].startswith('id: "') else ""
    lines["id"] += id_comment
    status = draw(st.sampled_from(["", "pending", '"pending"', "'pending'", "EMPTY"]))
    if status:
        lines["status"] = "status:" if status == "EMPTY" else f"status: {status}"
    order = draw(st.permutations(sorted(lines)))
    out = []
    for n, key in enumerate(order):
        out.append(f"{pad[:-2]}- {lines[key]}" if n == 0 else f"{pad}{lines[key]}")
        if draw(st.integers(0, 5)) == 0:
            out.append(f"{pad}# {draw(SENTENCE)}")
    return out


@st.composite
def styled_backlog(draw) -> tuple[str, list[str]]:
    ids = draw(st.lists(WORD.map(lambda w: f"task-{w}"), min_size=1, max_size=5, unique=True))
    parts = ["# Backlog (original Leviathan format)"] if draw(st.booleans()) else []
    parts.append("tasks:")
    pad = draw(st.sampled_from(["  ", "    "]))
    for task_id in ids:
        parts.extend(draw(styled_task(task_id, pad)))
        if draw(st.booleans()):
            parts.append("")
    if draw(st.booleans()):
        parts += ["", "metadata:", '  version: "1.0"', f"  total_tasks: {len(ids)}"]
    text = "\n".join(parts) + ("\n" if draw(st.booleans()) else "")
    return text, ids


@settings(max_examples=150, deadline=None)
@given(data=st.data(), backlog=styled_backlog(), status=STATUS)
def test_only_the_status_changes_on_exactly_one_line(data, backlog, status):
    text, ids = backlog
    task_id = data.draw(st.sampled_from(ids))
    edited = set_task_status(text, task_id, status)
    assert_only_status_changed(text, edited, task_id, status)


# --- the byte-for-byte check on what delivery pushes ------------------------------------------

def test_every_splice_passes_the_byte_check():
    for task_id in ("docs-quickstart",):
        edited = set_task_status(STYLED, task_id, "completed")
        check_status_edit(STYLED.encode(), edited.encode(), task_id, "completed")


def test_an_inserted_status_line_passes_the_byte_check():
    text = "tasks:\n  - id: a\n    title: t\n"
    edited = set_task_status(text, "a", "completed")
    assert edited == "tasks:\n  - id: a\n    status: completed\n    title: t\n"
    check_status_edit(text.encode(), edited.encode(), "a", "completed")


BASE = (b"# humans only\ntasks:\n  - id: a\n    status: pending  # note\n    ready: true\n"
        b"  - id: b\n    status: pending\n")


@pytest.mark.parametrize(("after", "why"), [
    (BASE.replace(b"# humans only", b"# humans only!"), "not a status line"),
    (BASE.replace(b"ready: true", b"ready: false"), "not a status line"),
    (BASE.replace(b"pending  # note", b"completed  # changed"), "more than the status value"),
    (BASE.replace(b"pending  # note", b"completed # note"), "more than the status value"),
    (BASE.replace(b"  - id: b\n    status: pending", b"  - id: b\n    status: completed"), "not the status of"),
    (BASE.replace(b"pending  # note", b"completed  # note").replace(b"ready: true", b"ready: false"),
     "more than one line"),
    (BASE.replace(b"pending  # note", b"completed  # note") + b"\n", "more than one line"),
    (BASE.replace(b"pending  # note", b"completed  # note").replace(b"\n", b"\r\n", 1), "more than one line"),
    (BASE.replace(b"pending  # note", b"done  # note"), "not a status line set to 'completed'"),
], ids=["comment", "other-key", "comment-on-status-line", "spacing", "other-task", "two-lines", "trailing-blank",
        "line-ending", "other-value"])
def test_the_byte_check_refuses_anything_but_the_one_status_value(after, why):
    with pytest.raises(ValueError, match=why) as exc:
        check_status_edit(BASE, after, "a", "completed")
    assert "humans only" not in str(exc.value)  # never quotes the file


def test_the_byte_check_accepts_the_minimal_edit():
    check_status_edit(BASE, BASE.replace(b"pending  # note", b"completed  # note"), "a", "completed")
    check_status_edit(BASE, BASE.replace(b"pending  # note", b'"completed"  # note'), "a", "completed")
