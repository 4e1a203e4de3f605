"""The paths no attempt may change: the target's own list plus the files its recipes and checks run.

Once a human merges a PR, the next cycle runs whatever the recipes file and its scripts say, so an
attempt that could edit them would choose what runs next, or judge itself (a check's script). The recipes
and checks are read at the pinned commit;
a script is the program of a step when it is a repository path, else the first non-option argument
(``python3 .leviathan/recipes/x.py``), or the top-level package of ``python3 -m pkg.mod``.
"""

from __future__ import annotations

from leviathan_lib.contracts.recipes import parse_recipes_file
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.guardrails import target_protected
from leviathan_lib.core.scope import Protected, ScopeViolation, path_segments


def _repo_path(item: str) -> str | None:
    try:
        return "/".join(path_segments(item))
    except ScopeViolation:
        return None


def step_scripts(argv: list[str]) -> list[str]:
    """The repository files one recipe step runs (see the module docstring)."""
    program = argv[0]
    if "/" in program and (path := _repo_path(program.removeprefix("./"))):
        return [path]
    args = iter(argv[1:])
    for item in args:
        if item == "-c":  # inline code (``python3 -c``, ``sh -c``) lives in the recipes file itself
            return []
        if item == "-m":
            module = next(args, "")
            top = module.split(".")[0]
            return [p for p in (_repo_path(top), _repo_path(f"{top}.py")) if p]
        if item.startswith("-"):
            continue
        path = _repo_path(item)
        return [path] if path else []
    return []


def recipe_scripts(recipes_text: str | None, recipes_path: str) -> list[str]:
    """Every script any recipe or check of the file runs; none when the file is missing or invalid (nothing
    runs)."""
    if recipes_text is None:
        return []
    try:
        defined = parse_recipes_file(recipes_text, source=recipes_path)
    except ValidationFailed:
        return []
    argvs = [argv for recipe in defined.recipes.values() for argv in recipe.argvs]
    argvs += [argv for check in defined.checks.values() for argv in check.steps]
    return sorted({path for argv in argvs for path in step_scripts(argv)})


def protected_for(target: TargetConfig, recipes_text: str | None) -> Protected:
    """What no attempt of ``target`` may change, given the recipes file read at the pinned commit."""
    return target_protected(target, tuple(recipe_scripts(recipes_text, target.recipes_path)))
