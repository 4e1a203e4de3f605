"""The one ``git diff --raw -z`` parser, on real git output."""

from __future__ import annotations

from leviathan_lib.git.raw_diff import RawEntry, parse_raw_diff
from leviathan_lib.git.runner import init_bare, run_git


def test_real_raw_output_with_odd_names_modes_and_deletions(tmp_path):
    work = tmp_path / "w"
    init_bare(tmp_path / "b.git")
    run_git(["init", "--quiet", "-b", "main", str(work)])
    (work / "gone.txt").write_text("x\n")
    (work / "run.sh").write_text("echo\n")
    run_git(["add", "--all"], cwd=work)
    run_git(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "one"], cwd=work)
    (work / "gone.txt").unlink()
    (work / "run.sh").chmod(0o755)
    (work / b"caf\xe9 new.txt".decode("utf-8", "surrogateescape")).write_text("y\n")
    run_git(["add", "--all"], cwd=work)
    raw = run_git(["diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", "HEAD", "--"], cwd=work,
                  text=False).stdout
    entries = {e.path: e for e in parse_raw_diff(raw)}
    assert set(entries) == {"caf\\xe9 new.txt", "gone.txt", "run.sh"}
    assert entries["caf\\xe9 new.txt"].raw_path == b"caf\xe9 new.txt"
    assert (entries["gone.txt"].status, entries["gone.txt"].new_mode, entries["gone.txt"].new_sha) == ("D", "000000",
                                                                                                      "0" * 40)
    assert (entries["run.sh"].old_mode, entries["run.sh"].new_mode, entries["run.sh"].status) == ("100644", "100755",
                                                                                                   "M")


def test_empty_output_and_trailing_garbage_give_no_entries():
    assert parse_raw_diff(b"") == []
    one = b":100644 100644 abc def M\0a.txt\0"
    assert parse_raw_diff(one + b"not an entry\0x\0") == [RawEntry("100644", "100644", "abc", "def", "M", "a.txt",
                                                                    b"a.txt")]
