"""The human-written backlog (``.leviathan/backlog.yaml``).

Tasks are validated one by one: a malformed task is reported as invalid (and never runs) without
hiding the valid tasks around it. Only a file-level problem (bad YAML, no ``tasks:`` list) makes the
whole backlog unreadable.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import CHECK_NAME_PATTERN
from leviathan_lib.core.read_limits import MAX_TASKS, TooManyTasks
from leviathan_lib.core.yamlsrc import (
    LineFinder,
    did_you_mean,
    field_name,
    line_finder,
    load_yaml,
    yaml11_bool_hint,
)

_REF_FORBIDDEN = frozenset(" ~^:?*[\\/")


def ref_component_problem(name: str) -> str | None:
    """Why ``name`` cannot be one component of a git branch name (``agent/<name>/1``), or None.

    ``git check-ref-format`` rules, applied without git (core runs no subprocess), plus a trailing ``.``,
    which git allows inside a ref but not at its end; a task id is refused before it is ever selected, so
    a bad one can never waste attempts by failing as a branch at delivery.
    """
    if not name:
        return "it is empty"
    bad = sorted({c for c in name if c in _REF_FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        return "it contains " + ", ".join(repr(c) for c in bad)
    if name[0] in ".-":
        return f"it starts with {name[0]!r}"
    if name.endswith("."):
        return "it ends with '.'"
    if name.endswith(".lock"):
        return "it ends with '.lock'"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name or name == "@":
        return "it contains '@{'" if "@{" in name else "it is '@'"
    return None


def _ref_safe(name: str) -> str:
    problem = ref_component_problem(name)
    if problem:
        raise ValueError(f"not usable in a git branch name: {problem}")
    return name


#: Task ids become branch names (``agent/<id>/<attempt>``), so they must be git-ref safe.
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"), AfterValidator(_ref_safe)]
#: Recipe names share the task-id alphabet so they are safe in logs, branch names and file names.
RecipeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
#: One of the repository's checks (``checks:`` of its recipes file).
CheckName = Annotated[str, StringConstraints(pattern=CHECK_NAME_PATTERN)]
PRIORITY_RANK = {"high": 0, "medium": 1, "low": 2}
PENDING_STATUSES = {None, "pending"}
DONE_STATUSES = {"completed", "done"}


class Task(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: TaskId
    title: Annotated[str, StringConstraints(min_length=1)]
    description: str = ""
    scope: str | None = None
    priority: Literal["high", "medium", "low"] | None = None
    estimated_size: str | None = None
    ready: bool = False
    status: str | None = None
    dependencies: list[TaskId] = Field(default_factory=list)
    allowed_paths: list[str] = Field(default_factory=list)
    acceptance_criteria: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    #: New on Airflow: the named recipe in ``.leviathan/recipes.yaml`` that delivers this task.
    recipe: str | None = None
    #: ``llm`` lets a model make the change (when the target enables it); default: the named recipe.
    executor: Literal["recipe", "llm"] | None = None
    #: Checks of the recipes file this task's attempts run on top of the target's ``required_checks``.
    checks: list[CheckName] = Field(default_factory=list, max_length=20)

    @property
    def priority_rank(self) -> int:
        return PRIORITY_RANK[self.priority or "medium"]

    def definition_hash(self) -> str:
        """Stable hash of the task definition (status excluded), to notice when humans change it."""
        # Unset keys newer than the hash (executor, checks) are left out, so hashes of tasks written before
        # they existed do not change.
        unset = ({"executor"} if self.executor is None else set()) | ({"checks"} if not self.checks else set())
        data = self.model_dump(exclude={"status"} | unset)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class InvalidTask(BaseModel):
    """A backlog entry that failed validation; it is listed so it can be reported, never run."""

    model_config = ConfigDict(frozen=True)

    index: int
    id: str | None
    problems: list[str]


class Backlog(BaseModel):
    model_config = ConfigDict(frozen=True)

    tasks: list[Task]
    invalid: list[InvalidTask] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}


#: All tasks in one validator call: the fast path when every entry is valid (per-task on any error).
_TASK_LIST = TypeAdapter(list[Task])


_TOP_LEVEL_KEYS = ("tasks", "metadata")


def task_field(index: int, task_id: str | None, rest: Sequence[str | int] = ()) -> str:
    """How a problem names a backlog entry and a field in it: ``task 'add-docs': allowed_paths[0]``, or
    ``tasks[1].allowed_paths[0]`` when the entry has no usable id (see :func:`entry_ids`).

    Humans know their tasks by id, not by position; the DAG's task log and the view show the same words.
    """
    if task_id is None:
        return field_name(("tasks", index, *rest))
    return f"task {task_id!r}: {field_name(rest)}" if rest else f"task {task_id!r}"


def entry_ids(raw_tasks: list[Any]) -> list[str | None]:
    """Each entry's id when it names that entry alone (a short printable string no other entry uses), else None."""
    ids = [raw.get("id") if isinstance(raw, dict) else None for raw in raw_tasks]
    usable = [i if isinstance(i, str) and 0 < len(i) <= 100 and i.isprintable() else None for i in ids]
    counts = Counter(usable)
    return [i if i is not None and counts[i] == 1 else None for i in usable]


def _task_message(err: ErrorDetails) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key" + did_you_mean(str(err["loc"][-1]), Task.model_fields)
    hint = yaml11_bool_hint(err["input"]) if err["type"] == "bool_type" else None
    if hint:
        return hint
    if err["type"] == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if err["type"].endswith("_type") and err["type"] != "model_type":
        return f"{err['msg']} (got {type(err['input']).__name__})"
    return err["msg"]


def _task_problems(
    exc: ValidationError, index: int, task_id: str | None, source: str, lines: LineFinder
) -> list[Problem]:
    out = []
    for err in exc.errors():
        field = task_field(index, task_id, err["loc"])
        out.append(Problem(source, field, _task_message(err), lines(("tasks", index, *err["loc"]))))
    return out


def _raw_tasks(data: Any, source: str, lines: LineFinder) -> list[Any]:
    """The ``tasks:`` list of a backlog document; :class:`ValidationFailed` when the file as a whole is wrong."""
    if not isinstance(data, dict) or "tasks" not in data:
        keys = data if isinstance(data, dict) else {}
        typos = [k for k in keys if isinstance(k, str) and did_you_mean(k, ["tasks"])]
        if typos:
            raise ValidationFailed([Problem(source, typos[0], "unknown top-level key; did you mean 'tasks'?",
                                            lines([typos[0]]))])
        raise ValidationFailed([Problem(source, "tasks", "expected a top-level mapping with a 'tasks:' list")])
    raw_tasks = data["tasks"]
    if raw_tasks is None:
        raw_tasks = []
    if not isinstance(raw_tasks, list):
        raise ValidationFailed(
            [Problem(source, "tasks", f"expected a list, got {type(raw_tasks).__name__}", lines(["tasks"]))]
        )
    if len(raw_tasks) > MAX_TASKS:
        raise TooManyTasks([Problem(source, "tasks", f"{len(raw_tasks)} tasks, over the limit of {MAX_TASKS} "
                                                     "(a backlog is read whole every cycle: split or archive it)",
                                    lines(["tasks"]))])
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL_KEYS)
    if unknown:
        expected = " (expected 'tasks' and optional 'metadata')"
        raise ValidationFailed([
            Problem(source, k, "unknown top-level key" + (did_you_mean(k, _TOP_LEVEL_KEYS) or expected), lines([k]))
            for k in unknown
        ])
    return raw_tasks


def parse_backlog(text: str, source: str = ".leviathan/backlog.yaml") -> tuple[Backlog, list[Problem]]:
    """Parse backlog text.

    Returns the backlog (valid tasks plus the invalid ones) and the per-task problems. Raises
    :class:`ValidationFailed` when the file as a whole cannot be read.
    """
    data = load_yaml(text, source)
    lines = line_finder(text)  # line numbers only on error, from one composition of the text
    raw_tasks = _raw_tasks(data, source, lines)
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValidationFailed([Problem(source, "metadata", "expected a mapping")])
    metadata = {str(k): v for k, v in metadata.items()}  # free-form and unused: never reject it for a key

    problems: list[Problem] = []
    valid: list[tuple[int, Task]] = []
    invalid: list[InvalidTask] = []
    try:  # fast path: every entry is valid, one validator call
        valid = list(enumerate(_TASK_LIST.validate_python(raw_tasks)))
        one_by_one = []
    except ValidationError:
        one_by_one = raw_tasks  # find which entries fail, and why
    names = entry_ids(one_by_one)
    for index, raw in enumerate(one_by_one):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        task_id = raw_id if isinstance(raw_id, str) else None
        if not isinstance(raw, dict):
            problem = Problem(source, task_field(index, None), "expected a mapping", lines(["tasks", index]))
            problems.append(problem)
            invalid.append(InvalidTask(index=index, id=None, problems=[str(problem)]))
            continue
        try:
            valid.append((index, Task.model_validate(raw)))
        except ValidationError as exc:
            task_problems = _task_problems(exc, index, names[index], source, lines)
            problems.extend(task_problems)
            invalid.append(InvalidTask(index=index, id=task_id, problems=[str(p) for p in task_problems]))

    # Duplicate ids make dependencies ambiguous: every copy is invalid.
    counts = Counter([t.id for _, t in valid] + [i.id for i in invalid if i.id])
    tasks = []
    for index, task in valid:
        if counts[task.id] > 1:
            problem = Problem(source, task_field(index, None, ["id"]), f"duplicate task id {task.id!r}",
                              lines(["tasks", index, "id"]))
            problems.append(problem)
            invalid.append(InvalidTask(index=index, id=task.id, problems=[str(problem)]))
        else:
            tasks.append(task)
    invalid.sort(key=lambda i: i.index)
    return Backlog(tasks=tasks, invalid=invalid, metadata=metadata), problems
