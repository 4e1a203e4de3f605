"""Webhook deliveries read without I/O: signatures, what each used event means, which targets it concerns."""

from __future__ import annotations

import pytest
import yaml

from leviathan_lib.core.config import parse_target
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.core.schedule import offset
from leviathan_lib.core.webhooks import Change, Ignored, concerns, read_delivery, repo_key, sign, signature_valid
from tests.webhook_payloads import WEBHOOKS, payload

SECRET = "s3cret-for-tests"
BODY = b'{"zen": "Keep it logically awesome."}'


def test_only_the_exact_signature_of_the_raw_body_is_valid():
    good = sign(SECRET, BODY)
    assert good.startswith("sha256=") and len(good) == 71
    assert signature_valid(SECRET, BODY, good)
    assert not signature_valid(SECRET, BODY, None)  # missing
    assert not signature_valid(SECRET, BODY, "")
    assert not signature_valid(SECRET, BODY, good[:-1])  # truncated
    assert not signature_valid(SECRET, BODY, "sha256=" + "0" * 64)  # wrong
    assert not signature_valid(SECRET, BODY + b" ", good)  # another body
    assert not signature_valid("other", BODY, good)  # another secret
    assert not signature_valid(SECRET, BODY, good.replace("sha256=", "sha1="))
    assert not signature_valid("", BODY, sign("", BODY))  # no secret: nothing is valid
    assert not signature_valid(SECRET, BODY, good + "\u00e9")  # not ASCII: refused, not an error


GITHUB = repo_key("https://github.com/acme/widgets.git")


@pytest.mark.parametrize("webhook", sorted(WEBHOOKS))
def test_every_used_event_names_its_repository_and_branch(webhook):
    change = read_delivery(WEBHOOKS[webhook][0], payload(webhook, "Acme/Widgets", branch="agent/t/1"))
    assert isinstance(change, Change), change
    assert GITHUB in change.keys and change.repository == "Acme/Widgets"
    assert change.branch in ("agent/t/1", None)  # an issue comment names no branch
    assert concerns(change, GITHUB, "main")
    assert not concerns(change, repo_key("https://github.com/acme/other.git"), "main")
    assert not concerns(change, None, "main")


def test_branches_other_than_the_target_branch_and_agent_branches_concern_no_target():
    other = read_delivery("push", payload("push", "acme/widgets", branch="feature/x"))
    assert isinstance(other, Change) and other.branch == "feature/x"
    assert not concerns(other, GITHUB, "main")
    assert concerns(other, GITHUB, "feature/x")
    tag = payload("push", "acme/widgets", ref="refs/tags/v1")
    assert read_delivery("push", tag) == Ignored("not_a_branch")


def test_an_agent_branch_of_another_repository_is_ignored():
    fork = payload("pull-request-closed", "acme/widgets", branch="agent/t/1", head_repo="mallory/widgets")
    assert read_delivery("pull_request", fork) == Ignored("agent_branch_of_another_repository")
    review = payload("pull-request-review-submitted", "acme/widgets", branch="agent/t/1", head_repo="mallory/w")
    assert read_delivery("pull_request_review", review) == Ignored("agent_branch_of_another_repository")
    # A human PR from a fork into the target branch is a change of the target branch once merged.
    human = payload("pull-request-closed", "acme/widgets", branch="fix", head_repo="mallory/widgets")
    change = read_delivery("pull_request", human)
    assert isinstance(change, Change) and change.branch == "main"


def test_unused_events_actions_and_shapes_are_ignored_with_a_reason():
    assert read_delivery("issues", {}) == Ignored("event_not_used")
    opened = payload("pull-request-closed", "acme/widgets", action="closed")
    opened["action"] = "opened"  # not a used action (and not this schema's: never sent by a test)
    assert read_delivery("pull_request", opened) == Ignored("action_not_used")
    assert read_delivery("push", ["not", "an", "object"]) == Ignored("payload_not_an_object")
    assert read_delivery("push", {"ref": "refs/heads/main", "repository": {"full_name": "a/b"}}) == Ignored(
        "no_repository")


def test_repository_keys_match_across_url_forms_and_local_paths():
    assert repo_key("git@github.com:ACME/widgets.git") == GITHUB
    assert repo_key("https://github.com/acme/widgets") == GITHUB
    assert repo_key("https://ghe.example.com/acme/widgets.git") != GITHUB
    assert repo_key("file:///srv/repos/demo.git") == repo_key("/srv/repos/demo.git")
    assert repo_key("ext::sh -c evil") is None


BASE = {"target_id": "hooked", "target_repo_url": "https://github.com/acme/widgets.git"}


def test_webhooks_option_is_strict_and_schedules_a_spread_safety_net():
    target = parse_target(yaml.safe_dump({**BASE, "webhooks": True}), "t.yaml")
    assert target.effective_schedule == f"{offset('hooked', 'minute', 60)} * * * *"
    tighter = parse_target(yaml.safe_dump({**BASE, "webhooks": True, "webhooks_safety_cron": "H/30 * * * *"}), "t")
    assert tighter.effective_schedule == f"{offset('hooked', 'minute', 30)}-59/30 * * * *"
    plain = parse_target(yaml.safe_dump(BASE), "t.yaml")
    assert not plain.webhooks and plain.effective_schedule.endswith("/5 * * * *")
    # The tasks validate the dumped config again (every key present): it must still be valid.
    assert parse_target(yaml.safe_dump(tighter.model_dump(mode="json")), "t.yaml") == tighter
    assert parse_target(yaml.safe_dump(plain.model_dump(mode="json")), "t.yaml") == plain
    for bad, expected in [({"webhooks": "yes"}, "webhooks"), ({"webhooks": True, "schedule_cron": "*/10 * * * *"},
                          "set webhooks_safety_cron instead"), ({"webhooks_safety_cron": "H/30 * * * *"},
                          "webhooks_safety_cron needs webhooks: true"),
                          ({"webhooks": True, "webhooks_safety_cron": "H/0 * * * *"}, "step")]:
        with pytest.raises(ValidationFailed) as caught:
            parse_target(yaml.safe_dump({**BASE, **bad}), "t.yaml")
        assert expected in str(caught.value), str(caught.value)
