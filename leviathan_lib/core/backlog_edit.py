"""The one edit Leviathan makes to a backlog: a task's ``status``, delivered in the task's own PR.

The backlog is human-owned, so the edit is a text splice at the exact span YAML reports for the value,
never a re-dump: comments, key order, quoting and blank lines stay byte-for-byte, and the PR diff is
one line a reviewer can check at a glance.
"""

from __future__ import annotations

import copy
import re

import yaml

_STR_TAG = "tag:yaml.org,2002:str"
#: Statuses are plain words; anything else would need escaping and has no business in a status.
_STATUS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def _scalar_text(status: str, quote: str | None) -> str:
    """``status`` as YAML: in ``quote`` if given, else plain unless plain would not read back as it."""
    if quote:
        return f"{quote}{status}{quote}"
    if status.strip() == status and yaml.safe_load(f"k: {status}") == {"k": status}:
        return status
    return f'"{status}"'


def _mapping_value(node: yaml.MappingNode, key: str) -> list[tuple[yaml.Node, yaml.Node]]:
    return [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]


def _tasks_node(root: yaml.Node | None) -> yaml.SequenceNode:
    """The backlog's ``tasks:`` list (``root`` is None for an empty document)."""
    tasks = _mapping_value(root, "tasks") if isinstance(root, yaml.MappingNode) else []
    if len(tasks) != 1 or not isinstance(tasks[0][1], yaml.SequenceNode):
        raise ValueError("the backlog has no 'tasks:' list")
    return tasks[0][1]


def _find_task(tasks: yaml.SequenceNode, task_id: str) -> yaml.MappingNode:
    matches = []
    for item in tasks.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        ids = _mapping_value(item, "id")
        if any(isinstance(v, yaml.ScalarNode) and v.tag == _STR_TAG and v.value == task_id for _, v in ids):
            matches.append(item)
    if not matches:
        raise ValueError(f"task {task_id!r} is not in the backlog")
    if len(matches) > 1:
        raise ValueError(f"task id {task_id!r} appears {len(matches)} times in the backlog")
    task = matches[0]
    if task.flow_style:
        raise ValueError(f"task {task_id!r} is written in flow style ({{...}}); edit its status by hand")
    return task


def _line_end(text: str, index: int) -> int:
    """Index just past the line break of the line holding ``index`` (or the end of the text)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _splice(text: str, task: yaml.MappingNode, status: str) -> str:
    statuses = _mapping_value(task, "status")
    if len(statuses) > 1:
        raise ValueError("the task has more than one 'status' key")
    if statuses:
        key, value = statuses[0]
        if not isinstance(value, yaml.ScalarNode) or value.style in ("|", ">"):
            raise ValueError("the task's status is not a one-line value; edit it by hand")
        start, end = value.start_mark.index, value.end_mark.index
        if start == end:  # ``status:`` with no value: the empty span sits right after the colon
            return f"{text[:start]} {_scalar_text(status, None)}{text[end:]}"
        quote = value.style if value.style in ("'", '"') else None
        return f"{text[:start]}{_scalar_text(status, quote)}{text[end:]}"

    id_key, id_value = _mapping_value(task, "id")[0]
    at = _line_end(text, id_value.end_mark.index)
    newline = "\r\n" if text[:at].endswith("\r\n") else "\n"
    line = f"{' ' * id_key.start_mark.column}status: {_scalar_text(status, None)}"
    if at == len(text) and not text.endswith("\n"):
        return f"{text}{newline}{line}"
    return f"{text[:at]}{line}{newline}{text[at:]}"


def set_task_status(text: str, task_id: str, status: str) -> str:
    """Return ``text`` with only task ``task_id``'s ``status`` set to ``status``.

    The status value is replaced in place (keeping its quote style), or a ``status:`` line is inserted
    right after the task's ``id:`` line, at the indentation of the ``id`` key. Raises ``ValueError``
    when the task is missing, duplicated, in flow style, or the edit would not be a pure status change.
    """
    if not _STATUS.match(status):
        raise ValueError(f"status {status!r} must be a short word ([A-Za-z0-9 ._-], starting alphanumeric)")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        before = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"the backlog is not valid YAML: {exc}") from None
    tasks = _tasks_node(root)
    task = _find_task(tasks, task_id)
    index = next(i for i, item in enumerate(tasks.value) if item is task)
    edited = _splice(text, task, status)

    # Fail closed: the splice must read back as the same data with exactly that status changed.
    expected = copy.deepcopy(before)
    expected["tasks"][index]["status"] = status
    try:
        after = yaml.safe_load(edited)
    except yaml.YAMLError as exc:
        raise ValueError(f"editing the status would break the backlog: {exc}") from None
    if after != expected:
        raise ValueError(f"editing the status of {task_id!r} in place would change more than its status")
    return edited


#: A ``status:`` line: key (maybe after the ``- `` of the task's first key), value, optional comment.
_STATUS_LINE = re.compile(
    rb"^(?P<lead>[ ]*(?:-[ ]+)?status[ ]*:[ ]*)(?P<value>[^#\r]*?)(?P<trail>[ ]*(?:#.*)?)(?P<cr>\r?)$"
)


def check_status_edit(before: bytes, after: bytes, task_id: str, status: str) -> None:
    """Raise ``ValueError`` unless ``after`` is ``before`` with only task ``task_id``'s status line changed.

    Compared byte for byte: every other line is identical, and the one differing line is a ``status:``
    line whose key, indentation and comment are unchanged (or a new ``status:`` line); the YAML data
    then differs only in that task's ``status``. Messages never quote the file.
    """
    old_lines, new_lines = before.split(b"\n"), after.split(b"\n")
    head = 0
    while head < min(len(old_lines), len(new_lines)) and old_lines[head] == new_lines[head]:
        head += 1
    tail = 0
    while (tail < min(len(old_lines), len(new_lines)) - head
           and old_lines[len(old_lines) - 1 - tail] == new_lines[len(new_lines) - 1 - tail]):
        tail += 1
    removed = old_lines[head:len(old_lines) - tail]
    added = new_lines[head:len(new_lines) - tail]
    if len(added) != 1 or len(removed) > 1:
        raise ValueError(f"the backlog differs in more than one line (at line {head + 1})")
    new = _STATUS_LINE.match(added[0])
    if new is None or new["value"].strip(b"'\"") != status.encode():
        raise ValueError(f"line {head + 1} of the backlog is not a status line set to {status!r}")
    if removed:
        old = _STATUS_LINE.match(removed[0])
        if old is None or (old["lead"], old["trail"], old["cr"]) != (new["lead"], new["trail"], new["cr"]):
            raise ValueError(f"line {head + 1} of the backlog changes more than the status value")
    try:
        old_data, new_data = yaml.safe_load(before), yaml.safe_load(after)
    except yaml.YAMLError:
        raise ValueError("the backlog is not valid YAML") from None
    tasks = old_data.get("tasks") if isinstance(old_data, dict) else None
    index = [i for i, t in enumerate(tasks or []) if isinstance(t, dict) and t.get("id") == task_id]
    if len(index) != 1:
        raise ValueError(f"task {task_id!r} is not exactly once in the backlog")
    expected = copy.deepcopy(old_data)
    expected["tasks"][index[0]]["status"] = status
    if new_data != expected:
        raise ValueError(f"the changed line is not the status of task {task_id!r}")
