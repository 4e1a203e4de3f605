"""The targets folder as everything reads it: each file's target, or why it cannot be used, by target id.

One reading for the DAG processor, the task processes, Spider and the CLI, so a broken file is the same
problem everywhere. A broken file keeps the target id it names when that can still be read (a misspelled
key leaves ``target_id: demo`` readable), so the target keeps its DAG, its row and its history, shown
as ``config_invalid`` until the file is fixed; two files naming one id both fail closed.

Reads are bounded: at most :data:`MAX_TARGET_FILE_BYTES` per file, regular files only (a FIFO never blocks
a parse), symlinks only into the folder itself (a Kubernetes ConfigMap's ``..data`` links), YAML through
the strict loader (no tags, no aliases).

A task process needs one target: :func:`find_target` reads one file, trusting an index of which file
names which id only while a fingerprint of the folder (names, inodes, sizes, times) is unchanged and
no file changed within :data:`RACY_NS` of the index (git's "racily clean" rule); otherwise it scans.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
import warnings
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from leviathan_lib.core.config import TargetConfig, parse_target
from leviathan_lib.core.errors import Problem, ValidationFailed
from leviathan_lib.core.names import FLEET_FILE_NAMES
from leviathan_lib.core.yamlsrc import load_yaml

#: Largest target file read (a target file is a few hundred bytes).
MAX_TARGET_FILE_BYTES = 64 * 1024
#: Largest number of target files read from one folder; the rest are reported, not read.
MAX_TARGET_FILES = 5000
#: A file changed this close to the index's writing may have changed again unseen (coarse timestamps).
RACY_NS = 2_000_000_000
TARGET_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ID_LINE = re.compile(rb"^target_id:[ \t]*[\"']?([a-z0-9][a-z0-9_-]{0,62})[\"']?[ \t]*(?:#.*)?$", re.M)
INDEX_VERSION = 1


class TargetFile(BaseModel):
    """One file of the targets folder: its config, or the problems that keep it from running."""

    name: str
    path: str
    #: The id the file names (its valid config's, or read from a broken one); None when it cannot be told.
    target_id: str | None = None
    #: True when ``target_id`` is only the file's name (the file names no id that can be read).
    id_from_name: bool = False
    target: TargetConfig | None = None
    #: ``file:line: field: problem`` lines; empty when the file is valid.
    problems: list[str] = Field(default_factory=list)
    #: The file's ``schedule_cron`` when it could be read (a broken file keeps its cadence).
    schedule_cron: str | None = None
    warnings: list[str] = Field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.target is not None and not self.problems


def _is_target_name(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and not name.startswith(".") and name not in FLEET_FILE_NAMES


def _read_bounded(path: Path, directory: Path) -> bytes:
    """The file's bytes; ValidationFailed for anything but a regular file inside ``directory`` within the bound."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc}")]) from None
    if real.parent != directory.resolve() and directory.resolve() not in real.parents:
        raise ValidationFailed([Problem(str(path), "", f"a symlink to {real}, outside the targets folder: not read")])
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc.strerror}")]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValidationFailed([Problem(str(path), "", "not a regular file: not read")])
        if info.st_size > MAX_TARGET_FILE_BYTES:
            raise ValidationFailed([Problem(str(path), "", f"{info.st_size} bytes: larger than the "
                                                           f"{MAX_TARGET_FILE_BYTES}-byte limit of a target file")])
        data = os.read(fd, MAX_TARGET_FILE_BYTES + 1)
    except OSError as exc:
        raise ValidationFailed([Problem(str(path), "", f"cannot read file: {exc.strerror}")]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_TARGET_FILE_BYTES:
        raise ValidationFailed([Problem(str(path), "", f"larger than the {MAX_TARGET_FILE_BYTES}-byte limit")])
    return data


def _claimed_id(data: bytes, source: str) -> tuple[str | None, str | None]:
    """The ``target_id`` (and ``schedule_cron``) a broken file still names, if they can be read."""
    try:
        raw = load_yaml(data.decode("utf-8"), source)
    except (ValidationFailed, UnicodeDecodeError):
        raw = None
    if isinstance(raw, dict):
        tid, cron = raw.get("target_id"), raw.get("schedule_cron")
        return (tid if isinstance(tid, str) and TARGET_ID.match(tid) else None,
                cron if isinstance(cron, str) else None)
    found = _ID_LINE.findall(data)
    return (found[0].decode() if len(found) == 1 else None), None


def read_target_file(path: Path, directory: Path) -> TargetFile:
    """One target file, parsed; never raises for what the file holds."""
    entry = TargetFile(name=path.name, path=str(path))
    try:
        data = _read_bounded(path, directory)
        text = data.decode("utf-8")
    except ValidationFailed as exc:
        entry.problems = [str(p) for p in exc.problems]
        data, text = b"", None
    except UnicodeDecodeError as exc:
        entry.problems = [str(Problem(str(path), "", f"not UTF-8 text (byte {exc.start})"))]
        text = None
    if text is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                entry.target = parse_target(text, str(path))
            except ValidationFailed as exc:
                entry.problems = [str(p) for p in exc.problems]
        entry.warnings = [str(w.message) for w in caught]
    if entry.target is not None:
        entry.target_id, entry.schedule_cron = entry.target.target_id, entry.target.schedule_cron
        return entry
    entry.target_id, entry.schedule_cron = _claimed_id(data, str(path))
    if entry.target_id is None and TARGET_ID.match(Path(entry.name).stem):
        entry.target_id, entry.id_from_name = Path(entry.name).stem, True
    return entry


def _names(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as found:
            return sorted(e.name for e in found if _is_target_name(e.name))
    except OSError:
        return []


def scan(directory: Path) -> list[TargetFile]:
    """Every target file of ``directory`` (sorted by name), duplicate ids marked; see the module docstring."""
    names = _names(directory)
    entries = [read_target_file(directory / name, directory) for name in names[:MAX_TARGET_FILES]]
    entries += [TargetFile(name=name, path=str(directory / name), problems=[str(Problem(
        str(directory / name), "", f"more than {MAX_TARGET_FILES} target files in the folder: not read"))])
        for name in names[MAX_TARGET_FILES:]]
    _mark_duplicates(entries)
    return entries


def _mark_duplicates(entries: list[TargetFile]) -> None:
    """Two files naming one id both fail closed; an id taken only from a file's name never claims one
    another file names (that broken file keeps no id)."""
    named: dict[str, list[TargetFile]] = {}
    for entry in entries:
        if entry.target_id is not None and not entry.id_from_name:
            named.setdefault(entry.target_id, []).append(entry)
    for entry in entries:
        if entry.id_from_name and entry.target_id in named:
            entry.target_id, entry.id_from_name = None, False
    for tid, claims in named.items():
        if len(claims) < 2:
            continue
        for entry in claims:
            others = ", ".join(e.path for e in claims if e is not entry)
            entry.problems = [*entry.problems, str(Problem(entry.path, "target_id",
                                                           f"{tid!r} is also named by {others}: none of them runs"))]
            entry.target = None


def by_target(entries: list[TargetFile]) -> dict[str, list[TargetFile]]:
    """The files of each target id (a valid target has exactly one, valid)."""
    out: dict[str, list[TargetFile]] = {}
    for entry in entries:
        if entry.target_id is not None:
            out.setdefault(entry.target_id, []).append(entry)
    return out


def fingerprint(directory: Path) -> tuple[str, int]:
    """A digest of what the folder holds (names, inodes, sizes, change times) and its newest change (ns)."""
    digest = hashlib.sha256()
    newest = 0
    try:
        info = os.stat(directory)
        digest.update(f"{directory.resolve()}\0{info.st_ino}\0{info.st_mtime_ns}\0".encode())
        newest = max(info.st_mtime_ns, info.st_ctime_ns)
        with os.scandir(directory) as found:
            entries = sorted((e for e in found if _is_target_name(e.name)), key=lambda e: e.name)
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=True)
                link = entry.stat(follow_symlinks=False)
            except OSError:
                digest.update(f"{entry.name}\0missing\n".encode())
                continue
            digest.update(f"{entry.name}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0"
                          f"{link.st_ino}\0{link.st_ctime_ns}\n".encode())
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns, link.st_ctime_ns)
    except OSError:
        return "", 0
    return digest.hexdigest(), newest


class _Index(BaseModel):
    version: int
    fingerprint: str
    written_ns: int
    #: target id → the file names naming it (valid or not).
    claims: dict[str, list[str]]


def write_index(directory: Path, entries: list[TargetFile], index_file: Path, print_: tuple[str, int]) -> None:
    """Remember which file names which id for this fingerprint (atomically; best effort)."""
    claims: dict[str, list[str]] = {}
    for entry in entries:
        if entry.target_id is not None:
            claims.setdefault(entry.target_id, []).append(entry.name)
    index = _Index(version=INDEX_VERSION, fingerprint=print_[0], written_ns=time.time_ns(), claims=claims)
    tmp = index_file.with_name(f".{index_file.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(index.model_dump_json(), encoding="utf-8")
        os.replace(tmp, index_file)
    except OSError:
        tmp.unlink(missing_ok=True)


def _trusted_index(index_file: Path, print_: tuple[str, int]) -> _Index | None:
    try:
        index = _Index.model_validate_json(index_file.read_bytes())
    except (OSError, ValidationError, json.JSONDecodeError):
        return None
    if index.version != INDEX_VERSION or not print_[0] or index.fingerprint != print_[0]:
        return None
    if print_[1] >= index.written_ns - RACY_NS:
        return None  # a file changed around the time the index was written: it may have changed unseen
    return index


def find_target(directory: Path, target_id: str, index_file: Path | None) -> list[TargetFile]:
    """The files naming ``target_id`` (one, valid, for a target that can run), reading as few as it can: one
    file when ``index_file`` holds a trusted index of the folder, else every file (and the index is rewritten)."""
    print_ = fingerprint(directory)
    index = _trusted_index(index_file, print_) if index_file is not None else None
    if index is not None:
        entries = [read_target_file(directory / name, directory) for name in index.claims.get(target_id, [])]
        _mark_duplicates(entries)
        if all(entry.target_id == target_id for entry in entries):
            return entries
    entries = scan(directory)
    if index_file is not None:
        write_index(directory, entries, index_file, print_)
    return by_target(entries).get(target_id, [])
