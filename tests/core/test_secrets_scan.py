"""The one redaction function: URL user info and token shapes, wherever text leaves the process."""

from __future__ import annotations

import pytest

from leviathan_lib.core.secrets_scan import redact_text

TOKEN = "ghp_" + "x" * 36


@pytest.mark.parametrize(("text", "expected"), [
    (f"cannot fetch https://user:{TOKEN}@github.com/a/b", "cannot fetch https://***@github.com/a/b"),
    ("fatal: 'https://user:tok3n@example.com/r.git/'", "fatal: 'https://***@example.com/r.git/'"),
    ("ssh://git@host/r.git and http://a@b:c@h/x", "ssh://***@host/r.git and http://***@h/x"),
    (f"token {TOKEN} in prose", "token [REDACTED:github_token] in prose"),
    ("git@github.com:a/b.git is an scp-like address, no credential", "git@github.com:a/b.git is an scp-like "
                                                                      "address, no credential"),
])
def test_url_user_info_and_token_shapes_are_redacted(text, expected):
    assert redact_text(text) == expected
