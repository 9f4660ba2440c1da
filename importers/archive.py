"""Unpack a downloaded zip (a texture bundle, an OBJ with its MTL) into the job folder. No bpy.

A served zip is hostile until checked: member names can climb out of the folder (`../`,
absolute paths, `C:` drives, backslashes that only Windows treats as separators), members can
be symlinks that later writes or reads follow, and a few kilobytes can declare or inflate to
gigabytes, or list so many members that reading the list is the attack: the end record's
member count and directory size are checked before the list is read. Every member is checked
before anything is written; the files are then inflated
into a private folder inside the destination while their bytes are counted, and moved into
place only when all of them arrived. A refusal leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
from dataclasses import dataclass

MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # uncompressed, all members together
MAX_MEMBERS = 2000
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024  # the list of members (names, sizes, headers)
_END = struct.Struct("<4s4H2LH")  # end of central directory: signature ... comment length
_END64_LOCATOR = struct.Struct("<4sLQL")  # where the zip64 end record is
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_SHOWN = 80  # characters of a member name quoted in a message


class ArchiveError(ValueError):
    """The zip is unreadable or unsafe; nothing was extracted. One line."""


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]  # the checked relative path, split on separators
    is_dir: bool


def extract_zip(
    path: str,
    dest_dir: str,
    max_total: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Extract every file of `path` under `dest_dir` (created if needed); their paths.

    Raises ArchiveError, with nothing written, for an unreadable zip, an unsafe member name,
    a symlink or special-file member, an encrypted member, more than `max_members` members,
    or more than `max_total` bytes once inflated (declared or actually counted)."""
    name = os.path.basename(path)
    try:
        _check_directory(path, max_members)
        with zipfile.ZipFile(path) as archive:
            members = _checked_members(archive, max_total, max_members)
            os.makedirs(dest_dir, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".unzip-", dir=dest_dir)
            try:
                _inflate(archive, members, staging, max_total)
                return _move_into(staging, dest_dir, members)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise ArchiveError(f"{name} is not a readable zip: {_one_line(exc)}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot extract {name}: {exc.strerror or _one_line(exc)}") from None


def _check_directory(path: str, max_members: int) -> None:
    """Refuse a zip whose end record lists too many members, or too long a list, before
    zipfile reads the list whole (it would hold every entry in memory first)."""
    declared = _declared_directory(path)
    if declared is None:
        return  # no end record: zipfile says what is wrong
    count, size = declared
    if count > max_members:
        raise ArchiveError(f"the zip has {count} members, more than the {max_members} allowed")
    if size > MAX_DIRECTORY_BYTES:
        raise ArchiveError(
            f"the zip's list of members is {size} bytes, over the {MAX_DIRECTORY_BYTES} byte limit"
        )


def _declared_directory(path: str) -> tuple[int, int] | None:
    """The member count and directory size the zip's end record declares (zip64 included),
    found as zipfile finds it: the last end record within the last 64 KiB."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - _END.size - 0xFFFF)
        f.seek(start)
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06", 0, len(tail) - _END.size + 4)  # a whole record after
        if at < 0:
            return None
        count, length, offset = _END.unpack_from(tail, at)[4:7]
        if count != 0xFFFF and 0xFFFFFFFF not in (length, offset):
            return count, length
        f.seek(max(0, start + at - _END64_LOCATOR.size))  # zip64: its own record has them
        signature, _, record, _ = _END64_LOCATOR.unpack(f.read(_END64_LOCATOR.size))
        f.seek(record if signature == b"PK\x06\x07" else size)
        raw = f.read(_END64.size)
    if len(raw) == _END64.size and raw[:4] == b"PK\x06\x06":
        count, length = _END64.unpack(raw)[7:9]
    return count, length  # else zipfile reads what this record says, as it does here


def _checked_members(archive: zipfile.ZipFile, max_total: int, max_members: int) -> list[_Member]:
    infos = archive.infolist()
    if len(infos) > max_members:
        raise ArchiveError(f"the zip has {len(infos)} members, more than the {max_members} allowed")
    declared = sum(info.file_size for info in infos)
    if declared > max_total:
        raise ArchiveError(
            f"the zip would inflate to {declared} bytes, over the {max_total} byte limit"
        )
    members: list[_Member] = []
    seen: set[tuple[str, ...]] = set()
    for info in infos:
        parts = _safe_parts(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"zip member {_show(info.filename)} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"zip member {_show(info.filename)} is not a regular file")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"zip member {_show(info.filename)} is encrypted")
        folded = tuple(part.casefold() for part in parts)
        is_dir = info.is_dir() or kind == stat.S_IFDIR
        if folded in seen and not is_dir:  # two names for one file on Windows and macOS
            raise ArchiveError(f"zip member {_show(info.filename)} appears twice")
        seen.add(folded)
        members.append(_Member(info, parts, is_dir))
    files = {m.parts for m in members if not m.is_dir}
    for member in members:  # "a" as a file and "a/b" as another: one would replace the other
        if any(member.parts[:i] in files for i in range(1, len(member.parts))):
            raise ArchiveError(f"zip member {_show(member.info.filename)} is inside a file")
    return members


def _safe_parts(name: str) -> tuple[str, ...]:
    """The member's path as relative components, or ArchiveError if it could leave the folder.

    Backslashes count as separators (Windows extractors treat them so), so `..\\x` is caught
    on every system."""
    if not name or "\x00" in name:
        raise ArchiveError(f"zip member {_show(name)} has an empty or invalid name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise ArchiveError(f"zip member {_show(name)} has an absolute path")
    parts = tuple(part for part in re.split(r"[\\/]", name) if part not in ("", "."))
    if not parts:
        raise ArchiveError(f"zip member {_show(name)} has an empty or invalid name")
    for part in parts:
        if part == "..":
            raise ArchiveError(f"zip member {_show(name)} climbs out of the folder ('..')")
        if ":" in part:  # a drive or an NTFS stream ("tex.png:evil")
            raise ArchiveError(f"zip member {_show(name)} has a ':' in its path")
    return parts


def _inflate(
    archive: zipfile.ZipFile, members: list[_Member], staging: str, max_total: int
) -> None:
    """Write the members under `staging`, counting real bytes: headers can lie."""
    root = os.path.realpath(staging)
    total = 0
    for member in members:
        target = os.path.join(root, *member.parts)
        if not _inside(os.path.realpath(target), root):
            raise ArchiveError(f"zip member {_show(member.info.filename)} leaves the folder")
        if member.is_dir:
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        written = 0
        with archive.open(member.info) as source, open(target, "xb") as out:
            while block := source.read(_CHUNK):
                written += len(block)
                total += len(block)
                if written > member.info.file_size or total > max_total:
                    raise ArchiveError(
                        f"zip member {_show(member.info.filename)} inflates beyond its"
                        f" declared size or the {max_total} byte limit"
                    )
                out.write(block)


def _move_into(staging: str, dest_dir: str, members: list[_Member]) -> list[str]:
    """Move the inflated files into place; on a failure, take back what was moved."""
    root = os.path.realpath(dest_dir)
    moved: list[str] = []
    try:
        for member in members:
            if member.is_dir:
                continue
            final = os.path.join(root, *member.parts)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if not _inside(os.path.realpath(os.path.dirname(final)), root):
                raise ArchiveError(f"zip member {_show(member.info.filename)} leaves the folder")
            if os.path.isdir(final) and not os.path.islink(final):
                raise ArchiveError(f"zip member {_show(member.info.filename)} is a folder here")
            os.replace(os.path.join(staging, *member.parts), final)
            moved.append(final)
    except BaseException:
        for done in moved:
            with contextlib.suppress(OSError):
                os.remove(done)
        raise
    return moved


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _show(name: str) -> str:
    name = name if len(name) <= _SHOWN else name[: _SHOWN - 1] + "…"
    return repr(name)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def write_atomically(target: str, data: bytes) -> str:
    """Write via a temporary file and rename: a crash never leaves half a file, and a symlink
    at `target` is replaced, never followed."""
    folder = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".conjure-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target
