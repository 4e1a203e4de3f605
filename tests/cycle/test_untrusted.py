"""The worker's result document is sanitized before it is stored: redacted output, no secret-bearing patch."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime

import pytest

from leviathan_lib.contracts.attempt import MAX_PATCH_BYTES, MAX_RESULT_BYTES, AttemptResult
from leviathan_lib.cycle.patch_reader import PatchUnreadable, read_patch
from leviathan_lib.cycle.untrusted import patch_problem, sanitize_result, sanitize_result_document

TOKEN = "ghp_" + "Zq9x" * 9
KEY = "sk-ant-" + "api03-" + "Qm7" * 10
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TEXT_PATCH = ("diff --git a/docs/a.md b/docs/a.md\nnew file mode 100644\nindex 0000000..1111111\n"
              "--- /dev/null\n+++ b/docs/a.md\n@@ -0,0 +1 @@\n+hello\n")


def _literal(path: str, data: bytes) -> str:
    packed = zlib.compress(data)
    lines = []
    for i in range(0, len(packed), 52):
        chunk = packed[i:i + 52]
        size = chr(ord("A") + len(chunk) - 1) if len(chunk) <= 26 else chr(ord("a") + len(chunk) - 27)
        lines.append(size + base64.b85encode(chunk + b"\0" * (-len(chunk) % 4)).decode())
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
            f"GIT binary patch\nliteral {len(data)}\n" + "\n".join(lines) + "\n\nliteral 0\nHcmV?d00001\n\n")


def _result(patch: str = TEXT_PATCH, **executor) -> AttemptResult:
    return AttemptResult(
        result_version=1, outcome="succeeded", error=None, base_sha="a" * 40, changed_paths=["docs/a.md"],
        patch=patch, executor={"kind": "recipe", **executor}, started_at=T0, finished_at=T0,
    )


def test_output_and_transcript_are_redacted_and_a_clean_patch_is_kept():
    result = _result(steps=[{"stdout_tail": f"token={TOKEN}", "stderr_tail": f"key {KEY}"}],
                     transcript=[{"text": "the key is " + KEY}])
    clean = sanitize_result(result)
    dumped = clean.model_dump_json()
    assert TOKEN not in dumped and KEY not in dumped
    assert clean.outcome == "succeeded" and clean.patch == TEXT_PATCH
    assert clean.executor["steps"][0]["stdout_tail"] == "token=[REDACTED:github_token]"


@pytest.mark.parametrize("patch", [
    TEXT_PATCH.replace("+hello", "+" + TOKEN),
    TEXT_PATCH.replace("docs/a.md", f"docs/{TOKEN}.md"),
    _literal("docs/a.bin", b"\0\x01" + TOKEN.encode()),
    _literal("docs/a.txt", TOKEN.encode("utf-16-le")),
], ids=["added-line", "file-name", "binary-literal", "utf-16"])
def test_a_secret_bearing_patch_is_dropped_and_flagged(patch):
    clean = sanitize_result(_result(patch))
    assert clean.outcome == "failed" and clean.patch == ""
    assert clean.error is not None and clean.error.code == "secret_detected"
    assert "github_token" in clean.error.message
    assert TOKEN not in clean.model_dump_json()


def test_secrets_in_removed_and_context_lines_are_not_the_workers():
    patch = ("diff --git a/docs/a.md b/docs/a.md\nindex 1111111..2222222 100644\n--- a/docs/a.md\n+++ b/docs/a.md\n"
             f"@@ -1,2 +1,2 @@\n {TOKEN}\n-{KEY}\n+removed the key\n")
    assert patch_problem(patch) is None


def test_oversized_and_inflating_patches_are_dropped():
    big = TEXT_PATCH + "+x\n" * (MAX_PATCH_BYTES // 3 + 1)
    assert sanitize_result(_result(big)).error.code == "patch_too_large"
    bomb = _literal("docs/zeros.bin", bytes(8 << 20))
    assert len(bomb) < 50_000
    code, message = patch_problem(bomb)
    assert code == "patch_too_large" and "8388608" in message


def test_an_undecodable_binary_hunk_fails_closed():
    bad = "diff --git a/x b/x\nGIT binary patch\nliteral 10\nzzzzz\n\n"
    with pytest.raises(PatchUnreadable):
        read_patch(bad, limit=100)
    assert patch_problem(bad)[0] == "patch_unreadable"


def test_a_delta_hunk_shows_the_bytes_it_inserts():
    # A git delta: base size 5, target size 5 + len(TOKEN): copy 5 bytes from offset 0, insert the token.
    delta = bytes([5, 5 + len(TOKEN), 0x90, 5, len(TOKEN)]) + TOKEN.encode()
    packed = zlib.compress(delta)
    line = chr(ord("A") + len(packed) - 1) + base64.b85encode(packed + b"\0" * (-len(packed) % 4)).decode()
    patch = f"diff --git a/x b/x\nindex 1111111..2222222 100644\nGIT binary patch\ndelta {len(delta)}\n{line}\n\n"
    content = read_patch(patch, limit=1000)
    assert content.binary == [TOKEN.encode()] and content.largest_binary == 5 + len(TOKEN)
    assert patch_problem(patch)[0] == "secret_detected"


def test_a_pod_document_is_sanitized_and_garbage_is_replaced():
    document = json.loads(_result(TEXT_PATCH.replace("+hello", "+" + TOKEN), log=KEY).model_dump_json())
    clean = sanitize_result_document(document)
    assert clean["outcome"] == "failed" and clean["error"]["code"] == "secret_detected"
    assert TOKEN not in json.dumps(clean) and KEY not in json.dumps(clean)
    for garbage, code in ((None, "worker_crashed"), ([1, 2], "worker_crashed"),
                          ({"result_version": 1, "patch": TOKEN}, "result_invalid"), ("not json", "result_invalid"),
                          ('{"result_version": 1, "patch": "' + TOKEN, "result_truncated")):
        replaced = sanitize_result_document(garbage)
        assert replaced["outcome"] == "failed" and replaced["error"]["code"] == code
        assert TOKEN not in json.dumps(replaced)


def test_an_oversized_result_document_is_neither_parsed_nor_stored():
    """A 300-step recipe once made a 2.4 MiB XCom: steps are capped at 100, and any document over the bound is
    replaced by a failure naming it, whatever it holds."""
    document = json.loads(_result(log="x").model_dump_json())
    document["executor"]["log"] = "x" * (MAX_RESULT_BYTES + 1)
    clean = sanitize_result_document(document)
    assert clean["outcome"] == "failed" and clean["error"]["code"] == "result_too_large"
    assert str(MAX_RESULT_BYTES) in clean["error"]["message"] and len(json.dumps(clean)) < 10_000
