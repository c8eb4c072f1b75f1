"""A model repo on the Hugging Face hub (or any mirror behind ``HF_ENDPOINT``).

All traffic is streamed GETs on ``huggingface_hub``'s own session (its auth
headers, user agent and proxies apply): the listing from ``/api/models``,
small files from ``resolve`` URLs, safetensors headers as range requests. The
server is a stranger, so:

* every body is read against a byte budget while it streams (the listing
  ``MAX_LISTING_BYTES``, small files ``MAX_SMALL_FILE_BYTES``, headers their
  declared length), never downloaded first and measured after;
* every command's hub traffic shares one deadline (``IMPORT_MODEL_HUB_DEADLINE``),
  no request's timeout exceeds the time left, and every read loop checks it;
* values the server chooses that become paths (the commit sha, file names) are
  checked against their format, and every cache path must resolve inside
  :func:`import_model.cache.cache_root`.

Listings, small files and header bytes are cached by commit, so
``HF_HUB_OFFLINE=1`` works after one online run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
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
            raise UserError(
                f"{self.display}: hub traffic exceeded the {self._deadline_s:g} s deadline "
                f"(IMPORT_MODEL_HUB_DEADLINE); the server at {constants.ENDPOINT} is too slow, retry later"
            )
        return left

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
        """Run one hub operation and turn every hub failure into one clear line."""
        try:
            return fn()
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


def _parse_json(raw: bytes) -> object:
    return json.loads(raw.decode("utf-8"))


def _cache_name(name: str, suffix: str = "") -> str:
    """A flat file name for a repo path: readable when short, a digest when long."""
    flat = name.replace("/", "--") + suffix
    return flat if len(flat.encode("utf-8")) <= 200 else hashlib.sha256(name.encode()).hexdigest() + suffix


def _bounded_read(path: Path, cap: int) -> bytes | None:
    """A regular file's bytes if it holds at most ``cap`` of them; None otherwise (never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
            return None
        data = handle.read(cap + 1)
    return data if len(data) <= cap else None


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
