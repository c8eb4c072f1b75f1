"""A model repo on the Hugging Face hub (or any mirror behind ``HF_ENDPOINT``).

All traffic is streamed GETs on ``huggingface_hub``'s own session (its auth
headers, user agent and proxies apply): the listing from ``/api/models``,
small files from ``resolve`` URLs, safetensors headers as range requests. The
server is a stranger, so:

* every body is read against a byte budget while it streams (the listing
  ``MAX_LISTING_BYTES``, small files ``MAX_SMALL_FILE_BYTES``, headers their
  declared length), never downloaded first and measured after;
* every command's hub traffic shares one deadline (``IMPORT_MODEL_HUB_DEADLINE``),
  no request's timeout exceeds the time left, and every read loop checks it; in
  the main thread a one-shot ``SIGALRM`` timer armed at the deadline also ends a
  request that blocks inside one read (a server trickling its response headers,
  which restarts httpx's per-read timeout on every byte), see :func:`_alarm_after`;
* values the server chooses that become paths (the commit sha, file names) are
  checked against their format, and every cache path must resolve inside
  :func:`import_model.cache.cache_root`.

Listings, small files and header bytes are cached by commit, so
``HF_HUB_OFFLINE=1`` works after one online run.

:meth:`HubSource.download` fetches whole files (config, tokenizer, weights) for
``compare``'s HF reference into ``<cache>/hub/<host>/<repo>/<sha>/snapshot/``.
Each file streams to a temporary file beside its target and is renamed into
place when whole; a safetensors file may be exactly as long as its header
declares (8 + header + tensor data), any other file at most
``MAX_SMALL_FILE_BYTES``. Weights take long, so the transfers run under their
own deadline, ``IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE`` (default: one hour plus a
second per 10 MiB of weights), instead of ``IMPORT_MODEL_HUB_DEADLINE``, which
still bounds the listing and the header reads before them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx
from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

from import_model.cache import atomic_write, cache_root
from import_model.errors import UserError
from import_model.safe_io import FileRefused, read_bounded
from import_model.source.base import MAX_SMALL_FILE_BYTES, ModelSource
from import_model.source.safetensors_header import (
    MAX_HEADER_BYTES,
    SafetensorsHeader,
    declared_header_length,
    parse_header_json,
)

#: First range read. A shard of a large sharded checkpoint has a header of a few KiB, so one
#: small request per shard suffices; a bigger header costs exactly one more request.
FIRST_READ_BYTES = 8 * 1024
#: Cap for the file listing (``/api/models/{repo}``); the largest real repos list well under 1 MiB.
MAX_LISTING_BYTES = 16 * 1024 * 1024
#: How much of an error answer's body is read (for its message) before it is dropped.
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Redirects followed per request (the hub redirects renamed repos and file downloads to its CDN).
MAX_REDIRECTS = 5
#: Longest ``--revision`` accepted, and longest repo file name (a path, and each of its parts).
MAX_REVISION_CHARS = 255
MAX_REPO_PATH_CHARS = 1024
MAX_REPO_PATH_PART_BYTES = 255

#: Defaults for ``IMPORT_MODEL_HUB_RETRIES`` / ``_TIMEOUT`` (per read, seconds) / ``_DEADLINE`` (per command, seconds).
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_DEADLINE_S = 600.0
#: Overrides of those variables for this process (tests set them); None reads the environment.
HUB_RETRIES: int | None = None
HUB_TIMEOUT_S: float | None = None
HUB_DEADLINE_S: float | None = None

#: What :meth:`HubSource.download` fetches by default: config, tokenizer and safetensors files (no pickles, no code).
SNAPSHOT_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken")
#: Default ``IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE``: this many seconds, plus one per ``DOWNLOAD_MIN_RATE`` bytes of weights.
DOWNLOAD_BASE_S = 3600.0
DOWNLOAD_MIN_RATE = 10 * 1024 * 1024
#: Override of ``IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE`` for this process (tests set it); None reads the environment.
HUB_DOWNLOAD_DEADLINE_S: float | None = None
#: Seconds between progress lines while one file streams.
PROGRESS_EVERY_S = 10.0
_MIB = 1024 * 1024

_SHA = re.compile(r"[0-9a-f]{40}")
#: Characters git refuses in a ref name (plus whitespace); a revision with one cannot exist.
_REVISION_FORBIDDEN = re.compile(r"[\s~^:?*\[\\]")

T = TypeVar("T")


# -- limits from the environment ----------------------------------------------------


def hub_retries() -> int:
    """Retries after a transient failure: ``HUB_RETRIES`` or ``$IMPORT_MODEL_HUB_RETRIES`` (default 3)."""
    if HUB_RETRIES is not None:
        return HUB_RETRIES
    return int(_env_number("IMPORT_MODEL_HUB_RETRIES", DEFAULT_RETRIES, whole=True, zero_ok=True))


def hub_timeout_s() -> float:
    """Longest wait for one network read: ``HUB_TIMEOUT_S`` or ``$IMPORT_MODEL_HUB_TIMEOUT`` (default 20)."""
    if HUB_TIMEOUT_S is not None:
        return HUB_TIMEOUT_S
    return _env_number("IMPORT_MODEL_HUB_TIMEOUT", DEFAULT_TIMEOUT_S, whole=False, zero_ok=False)


def hub_deadline_s() -> float:
    """All hub traffic of one source: ``HUB_DEADLINE_S`` or ``$IMPORT_MODEL_HUB_DEADLINE`` (default 600)."""
    if HUB_DEADLINE_S is not None:
        return HUB_DEADLINE_S
    return _env_number("IMPORT_MODEL_HUB_DEADLINE", DEFAULT_DEADLINE_S, whole=False, zero_ok=False)


def hub_download_deadline_s(fetch_bytes: int) -> float:
    """All file transfers of one :meth:`HubSource.download`: ``HUB_DOWNLOAD_DEADLINE_S`` or
    ``$IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE``; by default an hour plus a second per 10 MiB of weights to fetch
    (so a large model still fits at about 10 MiB/s, and a trickling server fails within hours, not days)."""
    if HUB_DOWNLOAD_DEADLINE_S is not None:
        return HUB_DOWNLOAD_DEADLINE_S
    default = DOWNLOAD_BASE_S + math.ceil(fetch_bytes / DOWNLOAD_MIN_RATE)
    return _env_number("IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE", default, whole=False, zero_ok=False)


def _env_number(name: str, default: float, *, whole: bool, zero_ok: bool) -> float:
    """A non-negative (or positive) finite number from the environment, else one clear line."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if whole else float(raw)
    except (ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        kind = "a whole number of at least 0" if whole else "a number of seconds above 0"
        raise UserError(f"{name}={_shown(raw)} is not {kind}; unset it or set e.g. {name}={default:g}")
    return value


# -- formats of server-chosen values ------------------------------------------------------


def is_commit_sha(value: object) -> bool:
    """True for a full commit id as the hub gives it: 40 lowercase hex digits."""
    return isinstance(value, str) and _SHA.fullmatch(value) is not None


def is_safe_repo_path(name: object) -> bool:
    """True for a relative POSIX path that stays inside the repo and is fit to show and to store.

    Refused: absolute paths, ``.``/``..`` or empty parts, backslashes, control and format
    characters (escape sequences, bidi overrides), over-long names or parts.
    """
    if not isinstance(name, str) or not 0 < len(name) <= MAX_REPO_PATH_CHARS:
        return False
    if "\\" in name or any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") and len(p.encode("utf-8")) <= MAX_REPO_PATH_PART_BYTES for p in parts)


def check_revision(revision: str) -> str:
    """``revision`` if it has the shape of a branch, tag or commit name, else one clear line."""
    ok = (
        0 < len(revision) <= MAX_REVISION_CHARS
        and not revision.startswith(("/", "-", "."))
        and not revision.endswith(("/", "."))
        and ".." not in revision
        and "//" not in revision
        and "@{" not in revision
        and not _REVISION_FORBIDDEN.search(revision)
        and not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in revision)
    )
    if not ok:
        raise UserError(
            f"--revision {_shown(revision)} is not a branch, tag or commit name (no '..', no leading '/', '-' or '.', "
            f"no spaces or control characters, at most {MAX_REVISION_CHARS} characters)"
        )
    return revision


def _shown(value: object, limit: int = 80) -> str:
    """A server or user value for a message: escaped (``\\x1b``), quoted, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    cut = text[:limit]
    return ascii(cut) + ("..." if len(text) > limit else "")


class HubSource(ModelSource):
    kind = "hub"

    def __init__(self, repo_id: str, revision: str | None = None) -> None:
        from import_model.source import HUB_ID

        if not HUB_ID.fullmatch(repo_id) or ".." in repo_id:  # fullmatch: `$` alone lets a trailing newline by
            raise UserError(f"{_shown(repo_id)} is not a hub ID of the form org/name")
        revision = revision or None  # an empty --revision means the default branch, as before
        self.repo_id = repo_id
        self.revision = "main" if revision is None else check_revision(revision)
        self.display = repo_id if revision is None else f"{repo_id}@{revision}"
        self.bytes_fetched = 0
        #: Names the listing held that are not safe relative paths; they are left out of :meth:`files`.
        self.skipped_files: list[str] = []
        self._retries = hub_retries()
        self._timeout_s = hub_timeout_s()
        self._deadline_s = hub_deadline_s()
        self._deadline_at: float | None = None
        self._deadline_name = "IMPORT_MODEL_HUB_DEADLINE"
        self._files: list[str] | None = None
        self._sha: str | None = None

    # -- the deadline ------------------------------------------------------------
    def _time_left(self) -> float:
        """Seconds left of this source's deadline (which starts at its first request); refuses once spent."""
        now = time.monotonic()
        if self._deadline_at is None:
            self._deadline_at = now + self._deadline_s
        left = self._deadline_at - now
        if left <= 0:
            raise self._deadline_error()
        return left

    def _deadline_error(self) -> UserError:
        return UserError(
            f"{self.display}: hub traffic exceeded the {self._deadline_s:g} s deadline "
            f"({self._deadline_name}); the server at {constants.ENDPOINT} is too slow, retry later"
        )

    @contextmanager
    def _own_deadline(self, seconds: float, name: str) -> Iterator[None]:
        """Run a phase (a download's transfers) under a deadline of its own, starting now; the old one after."""
        saved = (self._deadline_s, self._deadline_at, self._deadline_name)
        self._deadline_s, self._deadline_at, self._deadline_name = seconds, time.monotonic() + seconds, name
        try:
            yield
        finally:
            self._deadline_s, self._deadline_at, self._deadline_name = saved

    def _request_timeout(self) -> float:
        return min(self._timeout_s, self._time_left())

    def _deadline_spent(self) -> bool:
        return self._deadline_at is not None and time.monotonic() >= self._deadline_at

    # -- cache paths ---------------------------------------------------------------
    def _meta_dir(self) -> Path:
        host = constants.ENDPOINT.split("://", 1)[-1]
        host = re.sub(r"^\.+", "_", re.sub(r"[^A-Za-z0-9._-]", "_", host))[:200] or "_"
        return self._in_cache(cache_root() / "hub" / host / self.repo_id.replace("/", "--"))

    def _in_cache(self, path: Path) -> Path:
        """``path`` resolved, refused unless it lies inside the import-model cache root."""
        root = cache_root().expanduser().resolve()
        resolved = path.expanduser().resolve()
        if not resolved.is_relative_to(root):
            raise UserError(
                f"{self.display}: refusing cache path {_shown(str(path), 160)}, which lies outside the "
                f"import-model cache {root}; check IMPORT_MODEL_CACHE and the links inside it"
            )
        return resolved

    def _commit_path(self, *parts: str) -> Path:
        return self._in_cache(self._meta_dir().joinpath(self.commit, *parts))

    def _cache_write(self, path: Path, data: bytes) -> None:
        path = self._in_cache(path)
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise UserError(
                f"cannot write the import-model cache at {path} ({_first_line(exc)}); "
                "set IMPORT_MODEL_CACHE to a writable directory"
            ) from None

    def _cache_read(self, path: Path, cap: int) -> bytes | None:
        """A cached file's bytes, or None when absent, not a regular file, or over ``cap``."""
        return _bounded_read(self._in_cache(path), cap)

    # -- listing -----------------------------------------------------------------
    def files(self) -> list[str]:
        if self._files is None:
            self._files, self._sha = self._listing()
        return self._files

    @property
    def commit(self) -> str:
        self.files()
        assert self._sha is not None
        return self._sha

    def _listing(self) -> tuple[list[str], str]:
        ref_file = self._in_cache(self._meta_dir() / "refs" / self.revision.replace("/", "--"))
        if constants.HF_HUB_OFFLINE:
            return self._cached_listing(ref_file)
        url = f"{constants.ENDPOINT}/api/models/{self.repo_id}/revision/{quote(self.revision, safe='')}"
        too_big = (
            f"{self.display}: the file listing from {constants.ENDPOINT} is over {MAX_LISTING_BYTES} bytes "
            "(MAX_LISTING_BYTES); the server is broken or hostile"
        )
        doc = self._call(lambda: self._retrying(lambda: _parse_json(self._fetch(url, MAX_LISTING_BYTES, too_big))))
        sha, names = self._read_listing(doc)
        files = self._keep_safe(names)
        self._cache_write(self._meta_dir() / sha / "files.json", json.dumps(files).encode())
        self._cache_write(ref_file, sha.encode())
        return files, sha

    def _read_listing(self, doc: object) -> tuple[str, list[object]]:
        """The commit sha and the raw file names of a listing, refused unless the sha is a real one."""
        if not isinstance(doc, dict) or not isinstance(doc.get("siblings") or [], list):
            raise UserError(f"{self.display}: the hub at {constants.ENDPOINT} sent a listing that is not a model's; retry later")
        sha = doc.get("sha")
        if not is_commit_sha(sha):
            raise UserError(
                f"{self.display}: the hub at {constants.ENDPOINT} gave commit sha {_shown(sha)}, not 40 lowercase hex "
                "digits; refusing it (check HF_ENDPOINT)"
            )
        siblings = doc.get("siblings") or []
        return sha, [s.get("rfilename") for s in siblings if isinstance(s, dict)]

    def _keep_safe(self, names: list[object]) -> list[str]:
        """The names that are safe repo paths, sorted; the others are remembered in ``skipped_files``."""
        safe = {n for n in names if isinstance(n, str) and is_safe_repo_path(n)}
        self.skipped_files = sorted(_shown(n) for n in names if not is_safe_repo_path(n))
        return sorted(safe)

    def _cached_listing(self, ref_file: Path) -> tuple[list[str], str]:
        raw_sha = self._cache_read(ref_file, 64)
        sha = raw_sha.decode("ascii", errors="replace").strip() if raw_sha else ""
        raw_files = self._cache_read(self._meta_dir() / sha / "files.json", MAX_LISTING_BYTES) if is_commit_sha(sha) else None
        try:
            names = json.loads(raw_files) if raw_files is not None else None
        except (ValueError, RecursionError):
            names = None
        if not isinstance(names, list):
            raise UserError(
                f"{self.display}: HF_HUB_OFFLINE is set and this repo was never inspected online; "
                "unset HF_HUB_OFFLINE or pass a local directory"
            )
        return self._keep_safe(names), sha

    # -- small files -------------------------------------------------------------
    def read_bytes(self, name: str) -> bytes | None:
        if name not in self.files():
            return None
        cached = self._commit_path("files", _cache_name(name))
        data = self._cache_read(cached, MAX_SMALL_FILE_BYTES)
        if data is None and constants.HF_HUB_OFFLINE:
            data = self._hf_cache_read(name)
            if data is None:
                raise UserError(f"{self.display}: HF_HUB_OFFLINE is set and {name} is not cached; go online once")
        if data is None:
            url = hf_hub_url(self.repo_id, name, revision=self.commit, endpoint=constants.ENDPOINT)
            too_big = (
                f"{self.display}: {name} is more than {MAX_SMALL_FILE_BYTES} bytes, too large for a metadata file; "
                "it is corrupt"
            )
            data = self._call(lambda: self._retrying(lambda: self._fetch(url, MAX_SMALL_FILE_BYTES, too_big)), missing_ok=True)
            if data is None:
                return None
            self._cache_write(cached, data)
        return data

    def _hf_cache_read(self, name: str) -> bytes | None:
        """Offline: the file from ``huggingface_hub``'s own cache (e.g. after ``hf download``), bounded."""
        try:
            found = try_to_load_from_cache(self.repo_id, name, revision=self.commit)
        except (ValueError, OSError):
            return None
        return _bounded_read(Path(found).resolve(), MAX_SMALL_FILE_BYTES) if isinstance(found, str) else None

    # -- headers -------------------------------------------------------------------
    def safetensors_header(self, name: str) -> SafetensorsHeader:
        if name not in self.files():
            raise UserError(f"{self.display}: {name} is listed in the shard index but absent from the repo")
        cached = self._commit_path("headers", _cache_name(name, ".bin"))
        raw = self._cache_read(cached, 8 + MAX_HEADER_BYTES)
        if raw is not None and len(raw) >= 8:
            length = declared_header_length(raw[:8], name, None)
            return parse_header_json(raw[8 : 8 + length], name)
        if constants.HF_HUB_OFFLINE:
            raise UserError(f"{self.display}: HF_HUB_OFFLINE is set and the header of {name} is not cached; go online once")
        prefix = self._range(name, 0, FIRST_READ_BYTES)
        length = declared_header_length(prefix, name, None)
        if len(prefix) < 8 + length:
            if len(prefix) < FIRST_READ_BYTES:  # the file ended inside its header; asking again gets HTTP 416
                raise UserError(
                    f"{self.display}: {name} ends after {len(prefix)} bytes, inside its {8 + length}-byte header; "
                    "the file is truncated or corrupt"
                )
            prefix += self._range(name, len(prefix), 8 + length)
        if len(prefix) < 8 + length:
            raise UserError(f"{self.display}: the server sent {len(prefix)} bytes of {name}'s {8 + length}-byte header; retry later")
        raw = prefix[: 8 + length]
        header = parse_header_json(raw[8:], name)
        self._cache_write(cached, raw)
        return header

    def _range(self, name: str, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of a file, never reading more than asked even if Range is ignored."""
        url = hf_hub_url(self.repo_id, name, revision=self.commit, endpoint=constants.ENDPOINT)
        want = stop - start

        def fetch_once() -> bytes:
            with self._get(url, {"Range": f"bytes={start}-{stop - 1}"}) as response:
                skip = start if response.status_code == 200 else 0  # 200: Range ignored, body starts at 0
                if skip + want > MAX_HEADER_BYTES + 8 + FIRST_READ_BYTES:
                    raise UserError(f"{self.display}: the server ignores range requests; refusing to stream {name} whole")
                body = self._collect(response, skip + want, None)
            return body[skip : skip + want]

        return self._call(lambda: self._retrying(fetch_once))

    # -- whole files ---------------------------------------------------------------------
    def download(
        self, patterns: Sequence[str] = SNAPSHOT_PATTERNS, progress: Callable[[str], None] | None = None
    ) -> Path:
        """The listed files matching ``patterns``, whole, in a local directory (for loading with transformers).

        Files already there and complete are kept; the rest stream under their byte budgets and the
        download deadline. Refused before any file is fetched when the cache's disk lacks the room.
        """
        say = progress or _quiet
        root = self._commit_path("snapshot")
        plan = [self._plan(root, name) for name in self.files() if any(fnmatchcase(name, p) for p in patterns)]
        missing = [item for item in plan if not item.complete()]
        self._mkdir(root)
        if not missing:
            return root
        if constants.HF_HUB_OFFLINE:
            raise UserError(
                f"{self.display}: HF_HUB_OFFLINE is set and {missing[0].name} (of {len(missing)} missing files) "
                "was never downloaded; go online once"
            )
        weights = sum(item.size or 0 for item in missing)
        self._check_room(root, weights, sum(1 for item in missing if item.size is None))
        deadline = hub_download_deadline_s(weights)
        say(f"{self.display}: downloading {len(missing)} of {len(plan)} files ({_mib(weights)} of weights) into {root}")
        with self._own_deadline(deadline, "IMPORT_MODEL_HUB_DOWNLOAD_DEADLINE"):
            for item in missing:
                self._download_file(item, say)
        return root

    def _plan(self, root: Path, name: str) -> _Planned:
        """Where ``name`` goes and how long it may be: exact for safetensors (from its header), else capped."""
        parent = self._in_cache((root / name).parent)
        target = parent / name.rsplit("/", 1)[-1]  # the last part unresolved: a link there is replaced, not followed
        if not name.endswith(".safetensors"):
            return _Planned(name, target, None)
        header = self.safetensors_header(name)
        return _Planned(name, target, 8 + header.header_bytes + sum(t.nbytes for t in header.tensors.values()))

    def _check_room(self, root: Path, weights: int, small: int) -> None:
        need = weights + small * MAX_SMALL_FILE_BYTES
        try:
            free = shutil.disk_usage(root).free
        except OSError as exc:
            raise self._disk_error(root, exc) from None
        if need > free:
            raise UserError(
                f"{self.display}: the download needs up to {_mib(need)} ({_mib(weights)} of weights as their headers "
                f"declare, and {small} other files of at most {_mib(MAX_SMALL_FILE_BYTES)} each) but {root} has "
                f"{_mib(free)} free; free some space or point IMPORT_MODEL_CACHE at a larger disk"
            )

    def _download_file(self, item: _Planned, say: Callable[[str], None]) -> None:
        """Stream ``item`` into a temporary file beside its target, check it, and rename it into place."""
        self._mkdir(item.target.parent)
        size = _mib(item.size) if item.size is not None else f"at most {_mib(MAX_SMALL_FILE_BYTES)}"
        say(f"{self.display}: {item.name} ({size})")
        url = hf_hub_url(self.repo_id, item.name, revision=self.commit, endpoint=constants.ENDPOINT)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=item.target.parent, prefix=f".{_cache_name(item.name)[:120]}.", suffix=".part")
        except OSError as exc:
            raise self._disk_error(item.target.parent, exc) from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w+b") as out:
                self._call(lambda: self._retrying(lambda: self._stream_into(url, item, out, say)))
                if item.size is not None:
                    _check_stored_header(out, item)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, item.target)
        except OSError as exc:
            raise self._disk_error(item.target, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def _stream_into(self, url: str, item: _Planned, out: BinaryIO, say: Callable[[str], None]) -> None:
        """One attempt: the body into ``out``, resuming (HTTP range) after what an earlier attempt wrote."""
        have = out.seek(0, os.SEEK_END)
        if item.size is not None and have == item.size:
            return  # an earlier attempt got every byte and broke off after them
        start = have if item.size is not None and 0 < have < item.size else 0
        extra = {"Accept-Encoding": "identity", **({"Range": f"bytes={start}-"} if start else {})}
        with self._get(url, extra) as response:
            start = self._resume_point(response, start, item)
            out.seek(start)
            out.truncate()
            self._check_length(response, start, item)
            got = self._copy_body(response, out, start, item, say)
        if item.size is not None and got < item.size:
            raise UserError(self._truncated(item, got))

    def _resume_point(self, response: httpx.Response, start: int, item: _Planned) -> int:
        """Where the body starts: ``start`` for a matching 206, 0 when the server sent the whole file."""
        if not start or response.status_code == 200:
            return 0
        if response.status_code == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            return start
        raise UserError(
            f"{self.display}: asked to resume {item.name} at byte {start}, the server answered HTTP "
            f"{response.status_code} {_shown(response.headers.get('Content-Range', ''))}; retry later"
        )

    def _check_length(self, response: httpx.Response, start: int, item: _Planned) -> None:
        """Refuse before reading when the declared ``Content-Length`` already breaks the budget."""
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        if encoded or not declared.isdigit():
            return
        total = start + int(declared)
        if total > (item.size if item.size is not None else MAX_SMALL_FILE_BYTES):
            raise UserError(self._too_big(item))
        if item.size is not None and total < item.size:
            raise UserError(self._truncated(item, total))

    def _copy_body(self, response: httpx.Response, out: BinaryIO, got: int, item: _Planned, say: Callable[[str], None]) -> int:
        """Body bytes appended to ``out`` within the budget and the deadline; returns the file's length so far."""
        limit = item.size if item.size is not None else MAX_SMALL_FILE_BYTES
        next_note = time.monotonic() + PROGRESS_EVERY_S
        try:
            for chunk in response.iter_bytes():
                self.bytes_fetched += len(chunk)
                if got + len(chunk) > limit:
                    raise UserError(self._too_big(item))  # nothing past the budget is written
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise self._disk_error(item.target, exc) from None
                got += len(chunk)
                self._time_left()
                if time.monotonic() >= next_note:
                    next_note = time.monotonic() + PROGRESS_EVERY_S
                    say(f"{self.display}: {item.name}: {_mib(got)} of {_mib(limit) if item.size is not None else '?'}")
        except httpx.TransportError as exc:
            raise _BodyInterrupted() from exc
        return got

    def _too_big(self, item: _Planned) -> str:
        if item.size is None:
            return (f"{self.display}: {item.name} is more than {MAX_SMALL_FILE_BYTES} bytes, too large for a "
                    "metadata file; it is corrupt")
        return (f"{self.display}: the server sent more of {item.name} than the {item.size} bytes its header declares; "
                "refusing it (the file is corrupt or the server hostile)")

    def _truncated(self, item: _Planned, got: int) -> str:
        return (f"{self.display}: the server sent {got} bytes of {item.name}, whose header declares {item.size}; "
                "the file is truncated, retry later")

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._disk_error(path, exc) from None
        self._in_cache(path)

    def _disk_error(self, path: Path, exc: OSError) -> UserError:
        return UserError(
            f"{self.display}: cannot write {_shown(str(path), 160)} in the import-model cache ({_first_line(exc)}); "
            "free some space or set IMPORT_MODEL_CACHE to a writable directory"
        )

    # -- transfers -------------------------------------------------------------------
    def _fetch(self, url: str, budget: int, too_big: str) -> bytes:
        """A whole body of at most ``budget`` bytes; a longer one is refused with ``too_big`` as it streams."""
        with self._get(url) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > budget:
                raise UserError(too_big)
            return self._collect(response, budget, too_big)

    @contextmanager
    def _get(self, url: str, extra: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """A streamed GET; an error answer is raised as ``huggingface_hub``'s error for it."""
        headers = {**build_hf_headers(), **(extra or {})}
        with _stream(url, headers, self._request_timeout) as response:
            if response.status_code >= 400:
                body = self._collect(response, MAX_ERROR_BODY_BYTES, None)
                skip = ("content-length", "content-encoding", "transfer-encoding")
                kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in skip]
                hf_raise_for_status(httpx.Response(response.status_code, headers=kept, content=body, request=response.request))
            yield response

    def _collect(self, response: httpx.Response, limit: int, too_big: str | None) -> bytes:
        """Up to ``limit`` body bytes, checking the deadline after every chunk.

        With ``too_big`` a longer body is refused with that message; without, it is cut at ``limit``.
        """
        chunks: list[bytes] = []
        got = 0
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                got += len(chunk)
                self.bytes_fetched += len(chunk)
                if got > limit and too_big is not None:
                    raise UserError(too_big)
                if got >= limit:
                    break
                self._time_left()
        except httpx.TransportError as exc:
            raise _BodyInterrupted() from exc
        return b"".join(chunks)[:limit]

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying transient failures up to ``hub_retries()`` times, with backoff, within the deadline."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if attempt >= self._retries or not _transient(exc):
                    if isinstance(exc, _BodyInterrupted) and exc.__cause__ is not None:
                        raise exc.__cause__ from None  # give up with the transport error itself
                    raise
            time.sleep(min(4.0, 0.5 * 2 ** min(attempt, 8), self._time_left()))
            attempt += 1

    # -- errors --------------------------------------------------------------
    def _call(self, fn: Callable[[], T], missing_ok: bool = False) -> T:
        """Run one hub operation under the deadline's alarm and turn every hub failure into one clear line."""
        try:
            with _alarm_after(self._time_left()):
                return fn()
        except _DeadlineAlarm:
            raise self._deadline_error() from None
        except UserError:
            raise
        except GatedRepoError:
            raise UserError(
                f"{self.display}: the repo is gated; accept its terms on the hub and set HF_TOKEN (or run `hf auth login`)"
            ) from None
        except RevisionNotFoundError:
            raise UserError(f"{self.display}: revision {self.revision!r} does not exist in this repo") from None
        except RepositoryNotFoundError:
            raise UserError(
                f"{self.display}: repo not found at {constants.ENDPOINT} (check the ID; private repos need HF_TOKEN)"
            ) from None
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            if missing_ok and isinstance(exc, EntryNotFoundError):
                return None  # type: ignore[return-value]
            raise UserError(f"{self.display}: could not fetch a file ({_first_line(exc)}); check the network or HF_HUB_OFFLINE") from None
        except OfflineModeIsEnabled:
            raise UserError(f"{self.display}: HF_HUB_OFFLINE is set and the file is not cached; go online once") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise UserError(f"{self.display}: the hub answered HTTP {status} ({_first_line(exc)}); retry later") from None
        except httpx.TimeoutException:
            if self._deadline_spent():
                self._time_left()  # raises the deadline's own line
            raise UserError(f"{self.display}: the hub at {constants.ENDPOINT} timed out after retries; retry later") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # e.g. a listing cut short by a proxy
            raise UserError(
                f"{self.display}: the hub at {constants.ENDPOINT} sent malformed JSON ({_first_line(exc)}); retry later"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise UserError(
                f"{self.display}: connection to {constants.ENDPOINT} failed ({_first_line(exc)}); check the network and retry"
            ) from None


@contextmanager
def _stream(url: str, headers: dict[str, str], timeout: Callable[[], float]) -> Iterator[httpx.Response]:
    """A GET on ``huggingface_hub``'s session, following redirects ourselves so that no body is read unbounded.

    Retries are left to :meth:`HubSource._retrying` (which keeps to the deadline; ``huggingface_hub``'s
    backoff would sleep as long as a ``Retry-After`` header asks). ``timeout`` gives each hop's timeout.
    """
    for _ in range(MAX_REDIRECTS + 1):
        with http_stream_backoff(
            "GET", url, headers=headers, timeout=timeout(), follow_redirects=False,
            max_retries=0, retry_on_exceptions=(), retry_on_status_codes=(),
        ) as response:
            if not response.has_redirect_location:
                yield response
                return
            target = urljoin(url, response.headers["Location"])
        if urlsplit(target).netloc != urlsplit(url).netloc:  # credentials stay with the host they were meant for
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        url = target
    raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


class _DeadlineAlarm(BaseException):
    """Raised by the ``SIGALRM`` handler at the deadline, wherever the main thread is blocked.

    A ``BaseException`` (not an ``OSError``) so that httpx, httpcore and ``huggingface_hub`` neither wrap
    it nor swallow it in an ``except Exception``; httpcore still closes the connection on its way out.
    :meth:`HubSource._call` turns it into the deadline's one line.
    """


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _DeadlineAlarm()


@contextmanager
def _alarm_after(seconds: float) -> Iterator[None]:
    """Raise :class:`_DeadlineAlarm` in the body if it is still running after ``seconds``.

    httpx's timeouts bound each read, not a request: a server that sends one header byte per second
    restarts them forever, and the deadline checks between body chunks never run. A one-shot
    ``ITIMER_REAL`` timer interrupts the blocked read itself (PEP 475 lets the handler's exception out).

    The caller's own alarm is never clobbered: when a timer is already armed to fire no later than
    ours, ours is skipped (theirs ends the wait first; their handler runs as they meant). When theirs
    fires later, ours replaces it for the body, and afterwards their handler and timer are restored,
    less the time that passed. A handler not set from Python (``getsignal`` gives None) cannot be put
    back, so then no timer is armed either.

    Signals can only be handled in the main thread, and not on every platform: elsewhere this does
    nothing, and the deadline is kept as before, by the per-read timeouts (each at most the time left)
    and the checks between chunks, which a server trickling its headers can outlast.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    their_handler = signal.getsignal(signal.SIGALRM) if usable else None
    their_delay, their_interval = signal.getitimer(signal.ITIMER_REAL) if usable else (0.0, 0.0)
    if their_handler is None or (their_delay and their_delay <= seconds):
        yield
        return
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)  # the alarm is one-shot: once it fired, it cannot fire here again
        finally:
            signal.signal(signal.SIGALRM, their_handler)
            if their_delay:
                signal.setitimer(signal.ITIMER_REAL, max(their_delay - (time.monotonic() - started), 1e-6), their_interval)


def _parse_json(raw: bytes) -> object:
    return json.loads(raw.decode("utf-8"))


def _cache_name(name: str, suffix: str = "") -> str:
    """A flat file name for a repo path: readable when short, a digest when long."""
    flat = name.replace("/", "--") + suffix
    return flat if len(flat.encode("utf-8")) <= 200 else hashlib.sha256(name.encode()).hexdigest() + suffix


def _bounded_read(path: Path, cap: int) -> bytes | None:
    """A cached regular file's bytes if it holds at most ``cap`` of them; None otherwise (never blocks on a FIFO)."""
    try:
        return read_bounded(path, cap, "cached hub file")
    except FileRefused:
        return None


@dataclass(frozen=True)
class _Planned:
    """One file of a download: its repo name, where it goes, its exact size (safetensors) or None (capped)."""

    name: str
    target: Path
    size: int | None

    def complete(self) -> bool:
        """True when a regular file of the right size (or, for a capped file, any allowed size) is in place.

        Files are renamed into place only when whole, so one that is there and fits was written whole.
        """
        try:
            info = os.lstat(self.target)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        return info.st_size == self.size if self.size is not None else info.st_size <= MAX_SMALL_FILE_BYTES


def _check_stored_header(out: BinaryIO, item: _Planned) -> None:
    """The downloaded file's own header must be valid and tile the data up to the file's end exactly."""
    assert item.size is not None
    out.seek(0)
    length = declared_header_length(out.read(8), item.name, item.size)
    parse_header_json(out.read(length), item.name, item.size - 8 - length)


def _mib(count: int) -> str:
    return f"{count / _MIB:.1f} MiB"


def _quiet(_message: str) -> None:
    """The default progress callable: say nothing."""


class _BodyInterrupted(Exception):
    """A response body broke off mid-stream (its cause is the transport error); worth a retry."""


def _transient(exc: Exception) -> bool:
    """Errors worth another try: network trouble, 429 and 5xx, a body cut off, a cut-off JSON body."""
    if isinstance(exc, (_BodyInterrupted, httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        return True
    if isinstance(exc, json.JSONDecodeError):
        return True
    response = exc.response if isinstance(exc, HfHubHTTPError) else None
    return response is not None and response.status_code in (429, 500, 502, 503, 504)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
