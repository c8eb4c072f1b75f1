"""A small local Hugging Face hub mirror for tests (standard library only).

It speaks the part of the hub protocol ``huggingface_hub`` uses to inspect a
model: ``GET /api/models/{repo}[/revision/{rev}]`` for the file list and
commit, and ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (with ``Range``) for
files. Files are real (a directory, or bytes) or *virtual*: a header plus a
declared size, the rest zeros made on the fly, so a test can serve a
"150 GB" checkpoint without disk. Every body byte sent is counted, and
:class:`Fault` rules make chosen requests fail in chosen ways. The mirror can
also be hostile: ``add_repo(..., sha="../x")`` lists any commit sha, file
names may be anything (``"../evil"``, ``"/abs"``, ``"a\x1b[31m"``), and the
``trickle`` and ``chunked`` faults send bodies slowly or without a length
(``slow_headers`` trickles the response headers themselves)::

    with HubMirror({"org/tiny": tmp_path}) as mirror:
        mirror.inject(Fault.server_error("*.safetensors", times=2))
        ...  # point HF_ENDPOINT at mirror.endpoint
        assert mirror.bytes_sent_for("org/tiny/*") < 1024
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

__all__ = [
    "DTYPE_BYTES",
    "Fault",
    "FileContent",
    "HubMirror",
    "HugeCheckpoint",
    "RequestRecord",
    "VirtualFile",
    "huge_llama_checkpoint",
    "safetensors_header",
    "virtual_safetensors",
]

CHUNK = 64 * 1024
SEND_BUFFER = 64 * 1024
_ZEROS = bytes(CHUNK)
_SPACES = b" " * CHUNK

#: Bytes per element for the dtypes tests use in synthetic headers.
DTYPE_BYTES: dict[str, int] = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "U8": 1, "I8": 1}


@dataclass(frozen=True)
class VirtualFile:
    """A file of ``size`` bytes: ``head`` followed by zeros, never stored."""

    head: bytes
    size: int

    def __post_init__(self) -> None:
        if self.size < len(self.head):
            raise ValueError("a virtual file cannot be shorter than its head")


#: What a mirrored file holds: a file on disk, literal bytes, or a virtual file.
FileContent = Path | bytes | VirtualFile

FaultKind = Literal[
    "status", "slow", "cut", "ignore_range", "wrong_length", "trickle", "chunked", "redirect", "slow_headers"
]


@dataclass
class Fault:
    """One misbehaviour, applied to requests whose path matches ``pattern``.

    ``pattern`` is an ``fnmatch`` pattern (``*`` also matches ``/``) tested
    against the decoded URL path without its leading slash, e.g.
    ``org/name/resolve/main/config.json`` or ``api/models/org/name``.
    ``times`` limits the rule to the first N matching requests (None: all);
    ``hits`` counts how often it fired. Build rules with the classmethods.
    """

    kind: FaultKind
    pattern: str = "*"
    times: int | None = None
    method: str | None = None
    status: int = 500
    error_code: str | None = None
    delay_s: float = 0.0
    cut_after: int = 0
    length_delta: int = 0
    bytes_per_second: float = 0.0
    pad_bytes: int = 0
    location: str = ""
    header_bytes: int = 0
    hits: int = field(default=0, init=False)

    @classmethod
    def http(cls, status: int, pattern: str = "*", *, error_code: str | None = None, **kw: object) -> Fault:
        return cls("status", pattern, status=status, error_code=error_code, **kw)  # type: ignore[arg-type]

    @classmethod
    def not_found(cls, pattern: str = "*", **kw: object) -> Fault:
        """404 EntryNotFound: the file does not exist."""
        return cls.http(404, pattern, error_code="EntryNotFound", **kw)

    @classmethod
    def repo_not_found(cls, pattern: str = "*", status: int = 401, **kw: object) -> Fault:
        """What the hub answers for a missing (or private) repo: 401/404 with ``RepoNotFound``."""
        return cls.http(status, pattern, error_code="RepoNotFound", **kw)

    @classmethod
    def gated(cls, pattern: str = "*", **kw: object) -> Fault:
        return cls.http(401, pattern, error_code="GatedRepo", **kw)

    @classmethod
    def server_error(cls, pattern: str = "*", status: int = 500, **kw: object) -> Fault:
        return cls.http(status, pattern, **kw)

    @classmethod
    def slow(cls, pattern: str = "*", seconds: float = 5.0, **kw: object) -> Fault:
        """Wait before answering (normally, if the client is still there)."""
        return cls("slow", pattern, delay_s=seconds, **kw)  # type: ignore[arg-type]

    @classmethod
    def cut(cls, pattern: str = "*", after_bytes: int = 0, **kw: object) -> Fault:
        """Send the headers and ``after_bytes`` of the body, then drop the connection."""
        return cls("cut", pattern, cut_after=after_bytes, **kw)  # type: ignore[arg-type]

    @classmethod
    def ignore_range(cls, pattern: str = "*", **kw: object) -> Fault:
        """Answer 200 with the whole body, as a server without Range support does."""
        return cls("ignore_range", pattern, **kw)  # type: ignore[arg-type]

    @classmethod
    def wrong_length(cls, pattern: str = "*", delta: int = 100, **kw: object) -> Fault:
        """Declare ``Content-Length`` off by ``delta``; the real body follows and the connection closes."""
        return cls("wrong_length", pattern, length_delta=delta, **kw)  # type: ignore[arg-type]

    @classmethod
    def trickle(cls, pattern: str = "*", bytes_per_second: float = 1.0, **kw: object) -> Fault:
        """Send the body at ``bytes_per_second`` (in pieces ten times a second, at least a byte each)."""
        return cls("trickle", pattern, bytes_per_second=bytes_per_second, **kw)  # type: ignore[arg-type]

    @classmethod
    def chunked(cls, pattern: str = "*", pad_bytes: int = 0, **kw: object) -> Fault:
        """Answer with ``Transfer-Encoding: chunked`` and no length, the body followed by ``pad_bytes`` spaces.

        A client cannot see the size up front, so only a budget counted while reading stops it.
        Spaces after a JSON document keep it valid JSON.
        """
        return cls("chunked", pattern, pad_bytes=pad_bytes, **kw)  # type: ignore[arg-type]

    @classmethod
    def redirect(cls, pattern: str = "*", location: str = "", **kw: object) -> Fault:
        """Answer 302 to ``location`` (default: the same URL again, so a rule without ``times`` loops)."""
        return cls("redirect", pattern, location=location, **kw)  # type: ignore[arg-type]

    @classmethod
    def slow_headers(cls, pattern: str = "*", seconds_per_byte: float = 1.0, header_bytes: int = 60, **kw: object) -> Fault:
        """Send ``HTTP/1.1 200 OK``, then one byte of a header every ``seconds_per_byte``.

        A per-read timeout restarts on every byte, so only an overall deadline stops a client. After
        ``header_bytes`` bytes (or when the mirror stops) the headers end with an empty body and the
        connection closes, so the mirror's thread is bounded.
        """
        return cls("slow_headers", pattern, delay_s=seconds_per_byte, header_bytes=header_bytes, **kw)  # type: ignore[arg-type]

    def matches(self, method: str, path: str) -> bool:
        active = self.times is None or self.hits < self.times
        return active and (self.method is None or self.method == method) and fnmatchcase(path, self.pattern)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the mirror saw it."""

    method: str
    path: str
    status: int
    range: str | None
    body_bytes: int
    fault: FaultKind | None


@dataclass
class _Revision:
    sha: str
    files: dict[str, FileContent]


@dataclass
class _Repo:
    revisions: dict[str, _Revision] = field(default_factory=dict)  # by branch/tag name and by sha
    gated_token: str | None = None


class HubMirror:
    """A hub mirror on ``127.0.0.1`` (random port), served from a daemon thread.

    ``repos`` maps repo IDs to a directory or to ``{filename: FileContent}``;
    :meth:`add_repo` adds more (and more revisions). Use as a context manager,
    or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, repos: Mapping[str, str | Path | Mapping[str, FileContent]] | None = None) -> None:
        self._repos: dict[str, _Repo] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._bytes: Counter[str] = Counter()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._etags: dict[tuple[str, str], str] = {}
        self._sha_counter = itertools.count()
        self.requests: list[RequestRecord] = []
        for repo_id, content in (repos or {}).items():
            self.add_repo(repo_id, content)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> HubMirror:
        handler = type("_BoundHandler", (_Handler,), {"mirror": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="hub-mirror", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # keep-alive handler threads would otherwise wait forever
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubMirror:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL to use as ``HF_ENDPOINT``."""
        if self._server is None:
            raise RuntimeError("the mirror is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- content -----------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        content: str | Path | Mapping[str, FileContent],
        *,
        revision: str = "main",
        gated_token: str | None = None,
        sha: str | None = None,
    ) -> str:
        """Serve ``content`` as ``repo_id`` at ``revision``; returns the commit sha.

        With ``gated_token`` the repo answers 401 ``GatedRepo`` unless the
        request carries ``Authorization: Bearer <gated_token>``. ``sha`` sets
        the commit sha the listing gives (by default a made-up 40-hex one);
        any string goes, for tests of a hostile hub.
        """
        if isinstance(content, (str, Path)):
            root = Path(content)
            files: dict[str, FileContent] = {
                p.relative_to(root).as_posix(): p
                for p in sorted(root.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(root).parts
            }
        else:
            files = dict(content)
        if sha is None:
            sha = hashlib.sha1(f"{repo_id}@{revision}#{next(self._sha_counter)}".encode()).hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            if gated_token is not None:
                repo.gated_token = gated_token
            snapshot = _Revision(sha=sha, files=files)
            repo.revisions[revision] = snapshot
            repo.revisions[sha] = snapshot
        return sha

    # -- faults and accounting ---------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        """Add a fault rule (the first matching rule wins); returns it so tests can read ``hits``."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def bytes_sent(self) -> int:
        """Body bytes written to clients so far, over all requests."""
        with self._lock:
            return sum(self._bytes.values())

    def bytes_sent_for(self, pattern: str) -> int:
        """Body bytes sent for paths matching ``pattern``.

        Files count under ``{repo}/{filename}`` (whatever the revision), API
        answers under ``api/models/{repo}``.
        """
        with self._lock:
            return sum(n for key, n in self._bytes.items() if fnmatchcase(key, pattern))

    def count_requests(self, pattern: str = "*", method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if fnmatchcase(r.path, pattern) and method in (None, r.method))

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered; True if that happened within ``timeout``.

        A client that stops reading early (a capped range read, a timeout)
        leaves the server writing until the socket errors; wait for that
        before asserting on byte counts.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def reset_counters(self) -> None:
        with self._lock:
            self._bytes.clear()
            self.requests.clear()

    # -- used by the handler -----------------------------------------------------
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self._in_flight += 1
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _lookup(self, repo_id: str) -> _Repo | None:
        with self._lock:
            return self._repos.get(repo_id)

    def _etag(self, sha: str, name: str, content: FileContent) -> str:
        key = (sha, name)
        if key not in self._etags:
            digest = hashlib.sha256()
            if isinstance(content, VirtualFile):
                digest.update(content.head + str(content.size).encode())
            else:
                digest.update(content if isinstance(content, bytes) else content.read_bytes())
            self._etags[key] = digest.hexdigest()
        return self._etags[key]

    def _record(self, record: RequestRecord, key: str) -> None:
        with self._lock:
            self.requests.append(record)
            self._bytes[key] += record.body_bytes
            self._in_flight -= 1
            self._idle.notify_all()


class _Handler(BaseHTTPRequestHandler):
    """One handler for every route; faults are applied before and while answering."""

    mirror: HubMirror  # set on the bound subclass
    protocol_version = "HTTP/1.1"
    server_version = "hub-mirror/1"

    def setup(self) -> None:
        # A small send buffer keeps "bytes sent" close to "bytes the client read" when a client hangs up early.
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        super().setup()
        with self.mirror._lock:
            self.mirror._connections.add(self.request)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.close_connection = True  # the client reset a kept-alive connection (e.g. after a deadline)

    def finish(self) -> None:
        with self.mirror._lock:
            self.mirror._connections.discard(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # quiet; tests read mirror.requests instead

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    # -- routing -----------------------------------------------------------------
    def _serve(self) -> None:
        raw_path = urlsplit(self.path).path.lstrip("/")
        path = unquote(raw_path)
        self._fault = self.mirror._take_fault(self.command, path)
        self._sent = 0
        self._status = 0
        self._key = path
        try:
            self._route(raw_path)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client hung up (e.g. after its own timeout)
        finally:
            record = RequestRecord(
                method=self.command,
                path=path,
                status=self._status,
                range=self.headers.get("Range"),
                body_bytes=self._sent,
                fault=self._fault.kind if self._fault else None,
            )
            self.mirror._record(record, self._key)

    def _route(self, raw_path: str) -> None:
        fault = self._fault
        if fault and fault.kind == "slow" and self.mirror._stopping.wait(fault.delay_s):
            return  # the mirror is shutting down
        if fault and fault.kind == "slow_headers":
            return self._trickle_headers(fault)
        if fault and fault.kind == "status":
            return self._error(fault.status, fault.error_code, f"injected HTTP {fault.status}")
        if fault and fault.kind == "redirect":
            return self._error(302, None, "moved", {"Location": fault.location or self.path})
        segments = raw_path.split("/")
        if segments[:2] == ["api", "models"] and len(segments) > 2:
            rest = segments[2:]
            if len(rest) >= 3 and rest[-2] == "revision":
                repo_id, revision = "/".join(rest[:-2]), unquote(rest[-1])
            else:
                repo_id, revision = "/".join(rest), "main"
            self._key = f"api/models/{repo_id}"
            return self._api(repo_id, revision)
        if "resolve" in segments[1:-1]:
            at = segments.index("resolve", 1)
            repo_id = "/".join(segments[:at])
            revision, name = unquote(segments[at + 1]), unquote("/".join(segments[at + 2 :]))
            self._key = f"{repo_id}/{name}"
            return self._file(repo_id, revision, name)
        return self._error(404, None, "no such route")

    def _snapshot(self, repo_id: str, revision: str) -> _Revision | None:
        """The repo at ``revision``, or None after answering the error the hub would give."""
        repo = self.mirror._lookup(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated_token is not None and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(401, "GatedRepo", "Access to this model is restricted; you must be authenticated")
            return None
        snapshot = repo.revisions.get(revision)
        if snapshot is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return snapshot

    def _api(self, repo_id: str, revision: str) -> None:
        snapshot = self._snapshot(repo_id, revision)
        if snapshot is None:
            return
        repo = self.mirror._lookup(repo_id)
        doc = {
            "id": repo_id,
            "modelId": repo_id,
            "sha": snapshot.sha,
            "private": False,
            "gated": "manual" if repo is not None and repo.gated_token else False,
            "disabled": False,
            "tags": [],
            "siblings": [{"rfilename": name} for name in sorted(snapshot.files)],
        }
        body = json.dumps(doc).encode()
        self._answer(200, {"Content-Type": "application/json"}, iter([body]), len(body))

    def _file(self, repo_id: str, revision: str, name: str) -> None:
        snapshot = self._snapshot(repo_id, revision)
        if snapshot is None:
            return
        content = snapshot.files.get(name)
        if content is None:
            return self._error(404, "EntryNotFound", f"{name} does not exist", {"X-Repo-Commit": snapshot.sha})
        size = _size(content)
        start, stop = 0, size
        status = 200
        requested = self.headers.get("Range") if self.command == "GET" else None
        if requested and not (self._fault and self._fault.kind == "ignore_range"):
            parsed = _parse_range(requested, size)
            if parsed is None:
                return self._error(416, None, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
            start, stop = parsed
            status = 206
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{self.mirror._etag(snapshot.sha, name, content)}"',
            "X-Repo-Commit": snapshot.sha,
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        self._answer(status, headers, _chunks(content, start, stop), stop - start)

    # -- writing -------------------------------------------------------------------
    def _answer(self, status: int, headers: Mapping[str, str], body: Iterator[bytes], length: int) -> None:
        """A successful answer of ``length`` body bytes, spoiled by a ``wrong_length`` or ``cut`` fault."""
        fault = self._fault
        declared, limit = length, length
        if fault and fault.kind == "wrong_length":
            declared = max(0, length + fault.length_delta)
            self.close_connection = True  # the stream is out of step; nothing else can follow on it
        if fault and fault.kind == "cut":
            limit = min(length, fault.cut_after)
            self.close_connection = True
        if fault and fault.kind == "chunked":
            return self._answer_chunked(status, headers, body, length, fault.pad_bytes)
        self._start(status, {**headers, "Content-Length": str(declared)})
        if self.command == "HEAD":
            return
        if fault and fault.kind == "trickle":
            body = _paced(body, fault.bytes_per_second, self.mirror._stopping)
        self._send_chunks(body, limit)
        if self.close_connection:
            self._hang_up()

    def _answer_chunked(
        self, status: int, headers: Mapping[str, str], body: Iterator[bytes], length: int, pad: int
    ) -> None:
        """The answer without ``Content-Length``, in HTTP/1.1 chunks, ``pad`` spaces after the body."""
        self._start(status, {**headers, "Transfer-Encoding": "chunked"})
        if self.command == "HEAD":
            return
        padding = (_SPACES[: min(CHUNK, pad - done)] for done in range(0, pad, CHUNK))
        for chunk in itertools.chain(body, padding):
            if self.mirror._stopping.is_set():
                return
            if not chunk:
                continue  # an empty chunk would end the body
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self._sent += len(chunk)
        self.wfile.write(b"0\r\n\r\n")

    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _trickle_headers(self, fault: Fault) -> None:
        """The status line at once, then a header one byte per ``fault.delay_s``; an empty body after."""
        self._status = 200
        self.close_connection = True
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Slow: " + b"a" * max(0, fault.header_bytes - 8):
            if self.mirror._stopping.wait(fault.delay_s):
                return
            self.wfile.write(bytes([byte]))
        self.wfile.write(b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        self._hang_up()

    def _error(self, status: int, code: str | None, message: str, extra: Mapping[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
            headers["X-Error-Message"] = message
        self._start(status, headers)
        if self.command != "HEAD":
            self._send_chunks(iter([body]), len(body))

    def _send_chunks(self, chunks: Iterator[bytes], limit: int) -> None:
        """Write up to ``limit`` body bytes, counting what actually left."""
        for chunk in chunks:
            if self._sent >= limit or self.mirror._stopping.is_set():
                break
            chunk = chunk[: limit - self._sent]
            self.wfile.write(chunk)
            self._sent += len(chunk)

    def _hang_up(self) -> None:
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_WR)


def _paced(chunks: Iterator[bytes], rate: float, stopping: threading.Event) -> Iterator[bytes]:
    """``chunks`` re-cut into pieces sent ten times a second at ``rate`` bytes per second."""
    piece = max(1, int(rate / 10))
    pause = piece / rate
    for chunk in chunks:
        for at in range(0, len(chunk), piece):
            if stopping.wait(pause):
                return
            yield chunk[at : at + piece]


def _size(content: FileContent) -> int:
    if isinstance(content, VirtualFile):
        return content.size
    if isinstance(content, bytes):
        return len(content)
    return content.stat().st_size


def _chunks(content: FileContent, start: int, stop: int) -> Iterator[bytes]:
    """Bytes ``[start, stop)`` of a file, in chunks of at most ``CHUNK``."""
    if isinstance(content, Path):
        with content.open("rb") as handle:
            handle.seek(start)
            while start < stop:
                data = handle.read(min(CHUNK, stop - start))
                if not data:
                    return
                start += len(data)
                yield data
        return
    head = content.head if isinstance(content, VirtualFile) else content
    while start < min(stop, len(head)):
        end = min(stop, len(head), start + CHUNK)
        yield head[start:end]
        start = end
    while start < stop:  # past the head of a virtual file: zeros
        end = min(stop, start + CHUNK)
        yield _ZEROS[: end - start]
        start = end


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as ``[start, stop)``, clamped to the file; None if unsatisfiable."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:  # suffix range: the last N bytes
            count = int(last)
            return (max(0, size - count), size) if count > 0 and size > 0 else None
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
    except ValueError:
        return None
    return (start, stop) if start < size and start < stop else None


# -- safetensors helpers -------------------------------------------------------------

TensorSpecs = Mapping[str, tuple[str, Sequence[int]]]


def safetensors_header(tensors: TensorSpecs, metadata: Mapping[str, str] | None = None) -> bytes:
    """The header of a safetensors file holding ``{name: (dtype, shape)}``, tensors packed in order.

    Returns the 8-byte length prefix plus the JSON (space-padded to a multiple
    of 8, as the ``safetensors`` library writes it).
    """
    doc: dict[str, object] = {}
    if metadata is not None:
        doc["__metadata__"] = dict(metadata)
    offset = 0
    for name, (dtype, shape) in tensors.items():
        nbytes = DTYPE_BYTES[dtype] * math.prod(shape)
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(doc, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def virtual_safetensors(tensors: TensorSpecs, metadata: Mapping[str, str] | None = None) -> VirtualFile:
    """A full-size safetensors file whose tensor data is zeros generated on demand."""
    head = safetensors_header(tensors, metadata)
    data = sum(DTYPE_BYTES[dtype] * math.prod(shape) for dtype, shape in tensors.values())
    return VirtualFile(head=head, size=len(head) + data)


@dataclass
class HugeCheckpoint:
    """A virtual sharded checkpoint and the numbers a correct reader must find."""

    files: dict[str, FileContent]
    shards: list[str]
    parameter_count: int
    total_bytes: int
    tensor_count: int
    header_bytes: int

    @property
    def declared_size(self) -> int:
        """Sum of the shard sizes the server declares."""
        return sum(_size(self.files[s]) for s in self.shards)


def huge_llama_checkpoint(
    *,
    num_shards: int = 30,
    num_layers: int = 80,
    hidden: int = 8192,
    intermediate: int = 28672,
    vocab: int = 128256,
    heads: int = 64,
    kv_heads: int = 8,
    dtype: str = "BF16",
) -> HugeCheckpoint:
    """A Llama-3-70B-shaped checkpoint (defaults: ~70.6B params, 30 shards of ~4.7 GB), all virtual.

    Returns ``config.json``, ``model.safetensors.index.json`` and the shards,
    ready for :meth:`HubMirror.add_repo`.
    """
    head_dim = hidden // heads
    specs: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(num_layers):
        p = f"model.layers.{i}"
        specs += [
            (f"{p}.input_layernorm.weight", (hidden,)),
            (f"{p}.self_attn.q_proj.weight", (heads * head_dim, hidden)),
            (f"{p}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{p}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden)),
            (f"{p}.self_attn.o_proj.weight", (hidden, heads * head_dim)),
            (f"{p}.post_attention_layernorm.weight", (hidden,)),
            (f"{p}.mlp.gate_proj.weight", (intermediate, hidden)),
            (f"{p}.mlp.up_proj.weight", (intermediate, hidden)),
            (f"{p}.mlp.down_proj.weight", (hidden, intermediate)),
        ]
    specs += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]

    width = DTYPE_BYTES[dtype]
    total = sum(math.prod(shape) * width for _, shape in specs)
    target = total / num_shards
    groups: list[dict[str, tuple[str, Sequence[int]]]] = [{} for _ in range(num_shards)]
    done = 0
    for name, shape in specs:
        groups[min(num_shards - 1, int(done // target))][name] = (dtype, shape)
        done += math.prod(shape) * width
    groups = [g for g in groups if g]

    files: dict[str, FileContent] = {}
    weight_map: dict[str, str] = {}
    shards: list[str] = []
    header_bytes = 0
    for number, group in enumerate(groups, 1):
        shard = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        files[shard] = virtual_safetensors(group, {"format": "pt"})
        header_bytes += len(files[shard].head)  # type: ignore[union-attr]
        shards.append(shard)
        weight_map.update(dict.fromkeys(group, shard))
    files["model.safetensors.index.json"] = json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2
    ).encode()
    torch_dtype = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}.get(dtype, "bfloat16")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": torch_dtype,
    }
    files["config.json"] = json.dumps(config, indent=2).encode()
    return HugeCheckpoint(
        files=files,
        shards=shards,
        parameter_count=sum(math.prod(shape) for _, shape in specs),
        total_bytes=total,
        tensor_count=len(specs),
        header_bytes=header_bytes,
    )
