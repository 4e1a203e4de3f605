"""Which files a recipe runs, and so which an attempt may never change."""

from __future__ import annotations

import pytest

from leviathan_lib.core.config import TargetConfig
from leviathan_lib.cycle.protected import protected_for, recipe_scripts, step_scripts


@pytest.mark.parametrize(("argv", "scripts"), [
    (["python3", ".leviathan/recipes/write_doc.py", "docs/quickstart.md"], [".leviathan/recipes/write_doc.py"]),
    (["python3", "-u", "tools/gen.py", "--out", "docs/x.md"], ["tools/gen.py"]),
    (["./scripts/run.sh", "docs/"], ["scripts/run.sh"]),
    (["python3", "-m", "tools.docgen", "docs/"], ["tools", "tools.py"]),
    (["python3", "-c", "print(1)"], []),  # inline code lives in the recipes file, which is protected
    (["make", "-C"], []),
    (["/usr/bin/env", "python3"], ["python3"]),  # an absolute program is not a repository path
])
def test_step_scripts(argv, scripts):
    assert step_scripts(argv) == scripts


def test_every_recipe_counts_and_a_broken_file_protects_only_itself():
    text = ('recipes:\n  a:\n    command: ["python3", "x/a.py"]\n'
            '  b:\n    steps:\n      - ["python3", "x/b.py"]\n      - ["sh", "x/c.sh", "docs/out.md"]\n')
    assert recipe_scripts(text, "r.yaml") == ["x/a.py", "x/b.py", "x/c.sh"]
    assert recipe_scripts("recipes: [", "r.yaml") == [] and recipe_scripts(None, "r.yaml") == []
    target = TargetConfig(target_id="t", target_repo_url="x", protected_paths=["docs/conf.py"])
    protected = protected_for(target, text)
    expected = ["x/a.py", "x/c.sh", "docs/conf.py", ".leviathan/recipes.yaml", ".leviathan/backlog.yaml",
                "docs/x/.github/a.yml"]
    assert [p for p in [*expected, "docs/out.md", "x/d.py"] if protected.check(p)] == expected


def test_the_scripts_checks_run_are_protected_too():
    """An attempt may never edit its own checks: their scripts are protected like recipe scripts."""
    text = ('recipes:\n  a:\n    command: ["python3", "x/a.py"]\n'
            'checks:\n  lint:\n    steps:\n      - ["python3", ".leviathan/checks/lint.py", "docs/"]\n'
            '      - ["sh", "tools/style.sh"]\n')
    assert recipe_scripts(text, "r.yaml") == [".leviathan/checks/lint.py", "tools/style.sh", "x/a.py"]
    protected = protected_for(TargetConfig(target_id="t", target_repo_url="x"), text)
    assert protected.check(".leviathan/checks/lint.py") and protected.check("tools/style.sh")
    assert not protected.check("docs/")
