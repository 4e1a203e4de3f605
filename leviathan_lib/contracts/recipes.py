"""The recipes file (``.leviathan/recipes.yaml`` in the target repository): its recipes and checks.

Written by the target's people, read by the worker at the pinned commit and by ``leviathan validate`` and the
cycle's reads, possibly of another release: so it is a versioned boundary document like the attempt spec.
``version`` is optional (1 when left out); a file naming a version this release does not read is
``recipes_invalid``, naming the field. What the keys mean at run time: :mod:`leviathan_lib.worker.recipes`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from leviathan_lib.core.backlog import CheckName, RecipeName
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.yamlsrc import did_you_mean, field_name, line_of, load_yaml

#: The recipes-file version this release writes into its docs and reads (with the one before, once there is one).
RECIPES_VERSION: Final = 1
RESERVED_ENV = {"PATH", "HOME"}
#: Steps one recipe or check may have: with each step's output tails, this bounds the result document.
MAX_STEPS = 100
_NoNul = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
Argv = Annotated[list[_NoNul], Field(min_length=1)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Recipe(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    description: str = ""
    steps: Annotated[list[Argv], Field(min_length=1, max_length=MAX_STEPS)] | None = None
    command: Argv | None = None
    env: dict[EnvName, _NoNul] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_form(self) -> Recipe:
        if (self.steps is None) == (self.command is None):
            raise ValueError(
                "give exactly one of 'steps' (a list of argv lists) or 'command' (one argv list)"
            )
        for argv in self.argvs:
            if not argv[0]:
                raise ValueError("the program (first argv item) must not be empty")
        reserved = sorted(k for k in self.env if k in RESERVED_ENV or k.startswith("LEVIATHAN_"))
        if reserved:
            raise ValueError(f"env names {reserved} are reserved (set by the worker)")
        return self

    @property
    def argvs(self) -> list[list[str]]:
        return self.steps if self.steps is not None else [self.command]  # type: ignore[list-item]


#: Seconds a check may run when it does not say (and never past the attempt's deadline).
CHECK_TIMEOUT_SECONDS = 300
#: Checks one recipes file may declare (an attempt runs at most these).
MAX_CHECKS = 50


class Check(BaseModel):
    """One of the repository's own checks (``checks:``): argv steps run on the change before it is delivered."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    description: str = ""
    steps: Annotated[list[Argv], Field(min_length=1, max_length=MAX_STEPS)]
    #: Unset: :data:`CHECK_TIMEOUT_SECONDS`, never past the attempt's own deadline. Set: it must fit in the
    #: target's ``attempt_timeout_seconds`` (a task whose check does not is ``invalid_task``).
    timeout_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None

    @property
    def timeout(self) -> int:
        return self.timeout_seconds or CHECK_TIMEOUT_SECONDS

    @model_validator(mode="after")
    def _programs(self) -> Check:
        if any(not argv[0] for argv in self.steps):
            raise ValueError("the program (first argv item) must not be empty")
        return self


class RecipesFile(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    version: Literal[1] = RECIPES_VERSION
    recipes: dict[RecipeName, Recipe]
    checks: Annotated[dict[CheckName, Check], Field(max_length=MAX_CHECKS)] = Field(default_factory=dict)


def _message(err: Any, loc: list[Any]) -> str:
    if err["type"] == "extra_forbidden":  # a top-level key, or one of a recipe's or check's (<kind>.<name>.<key>)
        model = RecipesFile if len(loc) == 1 else Check if loc[0] == "checks" else Recipe
        return "unknown key" + did_you_mean(str(loc[-1]), model.model_fields)
    if err["type"] == "list_type" and any(part in ("steps", "command") for part in loc):
        got = type(err["input"]).__name__
        return f'expected an argv list like ["python3", "script.py"], never a shell string (got {got})'
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"].endswith("_type") and err["type"] != "model_type":
        msg += f" (got {type(err['input']).__name__})"
    return msg


def parse_recipes(text: str, source: str) -> dict[str, Recipe]:
    """Validate recipes text into name → recipe; every problem names ``source``, the field and the line."""
    return parse_recipes_file(text, source).recipes


def parse_recipes_file(text: str, source: str) -> RecipesFile:
    """Validate the whole recipes file (recipes and checks); problems as :func:`parse_recipes` reports them."""
    data = load_yaml(text, source)
    try:
        return RecipesFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            problems.append(
                Problem(source, field_name(loc) or "(top level)", _message(err, loc), line_of(text, loc))
            )
        raise ValidationFailed(problems) from None
