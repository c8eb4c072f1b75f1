"""Bounded reads of files the tool did not just write, and the output roots writers refuse.

A path the user names (PORT.md, a ``--markdown`` target, a port's files, a
checkpoint's config.json, a twin's marker) may be a device, a FIFO or a file
far larger than any the tool writes. :func:`read_bounded` looks before it
reads: only a regular file under its cap is read, opened without blocking so a
FIFO swapped in between the look and the open cannot hang the command, and
never more than the cap plus one byte whatever size the file claims (files in
``/proc`` claim 0). Every refusal is one line, exit 2.

This module imports only :mod:`import_model.errors`, so any layer can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path
from typing import BinaryIO

from import_model.errors import UserError

MIB = 1024 * 1024
#: PORT.md and ``plan --markdown`` targets: a tracking document is tens of KiB.
MAX_DOCUMENT_BYTES = 4 * MIB
#: One Python file of a port (``weight_adapters.py`` with its weight table, ``arch.py``, the graph), as
#: ``audit``, ``gates``, ``renames`` and ``scaffold`` read them back.
MAX_PORT_FILE_BYTES = 8 * MIB
#: A twin's ``twin.json`` and a port's manifest: a few KiB when the tool writes them.
MAX_MARKER_BYTES = 1 * MIB
#: import-model's own caches read back (the MAX registry, donor anatomies): a few hundred KiB when written.
MAX_CACHE_BYTES = 16 * MIB
#: How much of the end of a server log is read for its last error line.
MAX_LOG_TAIL_BYTES = 256 * 1024

_CHUNK = 1 * MIB


class FileRefused(UserError):
    """A file the tool will not read: absent, not a regular file, over its cap, or unreadable.

    ``missing`` is true when the file does not exist, for callers to whom an
    absent file is an ordinary answer.
    """

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: Path, mode: int, what: str) -> FileRefused:
    return FileRefused(f"{path}: the {what} is {_kind(mode)}, not a regular file; refusing to read it "
                       "(point at the real file or move this one away)")


def _too_large(path: Path, size: str, limit: int, what: str) -> FileRefused:
    cap = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
    return FileRefused(f"{path}: the {what} is {size}, over the {cap} cap for it; refusing to read it "
                       "(is it the right file? move it away to let the tool regenerate it)")


def _os_error(path: Path, exc: OSError | ValueError, what: str) -> FileRefused:
    if isinstance(exc, FileNotFoundError):
        return FileRefused(f"{path}: the {what} does not exist", missing=True)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return FileRefused(f"{path}: cannot read the {what} ({reason}); check the path and its permissions")


def _read_fd(fd: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes from ``fd``: one past the cap is enough to know the file is over it."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def open_regular(path: Path | str, what: str) -> BinaryIO:
    """``path`` opened for binary reading, refused (:class:`FileRefused`) unless it is a regular file.

    Symbolic links are followed (the Hugging Face cache is made of them); what
    they point at must be a regular file. The open does not block, so a FIFO
    put in place after the first look cannot hang it, and the opened file is
    looked at again before it is handed back.
    """
    path = Path(path)
    try:
        before = os.stat(path)
    except (OSError, ValueError) as exc:
        raise _os_error(path, exc, what) from None
    if not stat.S_ISREG(before.st_mode):
        raise _not_regular(path, before.st_mode, what)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise _os_error(path, exc, what) from None
    try:
        now = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise _os_error(path, exc, what) from None
    if not stat.S_ISREG(now.st_mode):  # swapped for something else since the first look
        os.close(fd)
        raise _not_regular(path, now.st_mode, what)
    return os.fdopen(fd, "rb")


def read_bounded(path: Path | str, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, refused (:class:`FileRefused`, exit 2) if it is over ``limit``.

    Never reads more than ``limit + 1`` bytes, whatever size the file claims.
    ``what`` names the file in the error line ("PORT.md", "config.json").
    """
    path = Path(path)
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise _too_large(path, f"{size} bytes", limit, what)
        try:
            data = _read_fd(handle.fileno(), limit)
        except OSError as exc:
            raise _os_error(path, exc, what) from None
    if len(data) > limit:
        raise _too_large(path, "larger than it claimed", limit, what)
    return data


def read_bounded_text(path: Path | str, limit: int, what: str, *, errors: str = "strict") -> str:
    """:func:`read_bounded`, decoded as UTF-8; undecodable text is refused unless ``errors`` says otherwise."""
    data = read_bounded(path, limit, what)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise FileRefused(f"{path}: the {what} is not UTF-8 text (byte {exc.start}); "
                          "point at the right file or re-save it as UTF-8") from None


def read_marker(path: Path, what: str, damaged: str) -> dict | None:
    """A JSON object the tool left as a marker (``twin.json``, a port manifest); None when there is none.

    A marker that is not a regular file or is over :data:`MAX_MARKER_BYTES` is refused as any
    bounded read is; one that does not hold a JSON object raises ``damaged`` (one line, exit 2).
    """
    if not path.exists() and not path.is_symlink():
        return None
    try:
        marker = json.loads(read_bounded_text(path, MAX_MARKER_BYTES, what))
    except ValueError:
        marker = None
    if not isinstance(marker, dict):
        raise UserError(damaged)
    return marker


def _home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError, OSError):
        return None


def _same_or_inside(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b)


def check_output_root(path: Path | str, what: str, *, source: Path | str | None = None) -> Path:
    """``path`` resolved, refused when a writer must not replace or fill it.

    Refused: the file-system root, the user's home directory (as written and
    resolved), and, when ``source`` is given (the directory the command reads
    from), an output that equals it, contains it or lies inside it. ``what``
    names the option in the error line (``--output``).
    """
    given = Path(path).expanduser().absolute()
    resolved = Path(os.path.realpath(given))
    if resolved == Path(resolved.anchor) or given == Path(given.anchor):
        raise UserError(f"{what} {given}: refusing to write into the file-system root; name a directory of its own")
    home = _home()
    if home is not None:
        homes = {home.absolute(), Path(os.path.realpath(home))}
        if given in homes or resolved in homes:
            raise UserError(f"{what} {given}: refusing to write into your home directory itself; "
                            "name a directory inside it (e.g. ~/ports)")
    if source is not None:
        src = Path(os.path.realpath(Path(source).expanduser().absolute()))
        if _same_or_inside(resolved, src) or _same_or_inside(src, resolved):
            raise UserError(f"{what} {given}: the output would overlap the source directory {src}; "
                            "write it somewhere outside the source")
    return resolved


# ------------------------------------------------------------------------------------------ the tool's own files


def directory_identity(path: Path | str) -> list[int]:
    """``[st_dev, st_ino]`` of the directory ``path`` itself (a link is not followed).

    A marker the tool leaves records the identity of the directory it was
    written in; ``os.rename`` on one file system keeps it, while a copy (``cp
    -r``, a clone, an unpacked archive) is a new directory with another one. So
    a marker whose identity is not its directory's was not left there by the tool.
    """
    info = os.lstat(path)
    return [info.st_dev, info.st_ino]


def is_written_here(recorded: object, path: Path | str) -> bool:
    """True when ``recorded`` (a marker's identity field) is the current identity of the directory ``path``."""
    if not (isinstance(recorded, list) and len(recorded) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in recorded)):
        return False
    try:
        return recorded == directory_identity(path)
    except OSError:
        return False


def _nothing_else(_relative: str) -> bool:
    return False


def foreign_entries(root: Path | str, own: Collection[str],
                    also_own: Callable[[str], bool] = _nothing_else) -> list[str]:
    """Relative paths under ``root`` (``/``-separated, sorted) that are not the tool's own.

    Own: a plain file whose path is in ``own``, and a real directory that holds
    one of them; ``also_own`` may accept further paths (a port's Python
    bytecode), a directory's with a trailing ``/``. Anything else is foreign: another file, a link, a FIFO or
    device, a directory of no own file (reported once, not descended into).
    """
    prefixes = {name.rsplit("/", 1)[0] for name in own if "/" in name}
    parents = {"/".join(p.split("/")[:i]) for p in prefixes for i in range(1, p.count("/") + 2)}
    found: list[str] = []

    def walk(directory: Path, base: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = f"{base}{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    if relative in parents or also_own(f"{relative}/"):
                        walk(Path(entry.path), f"{relative}/")
                    else:
                        found.append(relative)
                elif not entry.is_file(follow_symlinks=False) or not (relative in own or also_own(relative)):
                    found.append(relative)

    walk(Path(root), "")
    return sorted(found)


def file_sha256(path: Path | str, what: str) -> tuple[int, str]:
    """``(size, sha256 hex)`` of the regular file ``path``, read in chunks (refused like :func:`open_regular`)."""
    digest = hashlib.sha256()
    size = 0
    with open_regular(path, what) as handle:
        try:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        except OSError as exc:
            raise _os_error(Path(path), exc, what) from None
    return size, digest.hexdigest()
