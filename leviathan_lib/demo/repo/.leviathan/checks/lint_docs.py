"""Demo check: the documentation pages under docs/ hold no TODO marker.

Leviathan runs it (recipes.yaml `checks:`, named in the target's `required_checks`) on the pinned commit and
again on every change, in the same sandbox as the recipes; a change it fails on never becomes a pull request.
"""

import sys
from pathlib import Path

found = []
for page in sorted(Path("docs").rglob("*.md")):
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if "TODO" in line:
            found.append(f"{page}:{number}: TODO marker left in the page")
for problem in found:
    print(problem)
print(f"lint-docs: {len(list(Path('docs').rglob('*.md')))} page(s) checked, {len(found)} problem(s)")
sys.exit(1 if found else 0)
