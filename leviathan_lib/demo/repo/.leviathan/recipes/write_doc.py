"""Demo recipe: write one documentation page of the widgets project.

When the attempt continues a pull request a reviewer requested changes on, the worker hands the review
text in ``$LEVIATHAN_REVIEW_FEEDBACK_FILE``; this recipe keeps it, quoted, as the page's review notes
(data only: it never runs it).
"""

import os
import sys
from pathlib import Path

PAGES = {
    "quickstart": (
        "docs/quickstart.md",
        "# Quickstart\n\n## Install\n\n```\npip install widgets\n```\n\n"
        "## Run\n\n```\nwidgets serve --port 8000\n```\n",
    ),
    "faq": (
        "docs/faq.md",
        "# FAQ\n\n## Which Python versions are supported?\n\n3.11 and newer.\n\n"
        "## Where is the configuration?\n\nIn `widgets.toml` next to your project.\n\n"
        "## How do I report a bug?\n\nOpen an issue with the output of `widgets --version`.\n",
    ),
    "changelog": (
        "docs/changelog.md",
        "# Changelog\n\n## Unreleased\n\n- New: a [quickstart](quickstart.md) guide.\n",
    ),
    "roadmap": (
        "docs/roadmap.md",
        "# Roadmap\n\n## Next\n\nTODO: ask the users what they need.\n",
    ),
}

path, text = PAGES[sys.argv[1]]
feedback = os.environ.get("LEVIATHAN_REVIEW_FEEDBACK_FILE")
if feedback:
    notes = Path(feedback).read_text(encoding="utf-8").strip().splitlines()
    text += "\n## Review notes\n\n" + "\n".join(f"> {line}".rstrip() for line in notes) + "\n"
Path(path).parent.mkdir(parents=True, exist_ok=True)
Path(path).write_text(text, encoding="utf-8")
print(f"wrote {path}")
