"""Run ``max serve`` with a custom architecture: start, wait for health, stop.

:class:`MaxServer` is a context manager. The server runs in its own process
group (its workers too) with its output in a log file, so it never writes to
the terminal and can always be stopped as a whole: SIGTERM to the group, then
SIGKILL after a grace period. A start that fails or takes too long becomes a
:class:`UserError` quoting the last lines of the log.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from import_model.cache import cache_root
from import_model.errors import UserError
from import_model.safe_io import MAX_LOG_TAIL_BYTES, open_regular

DEVICES = ("cpu", "gpu")
#: The encoding each device tier serves at unless told otherwise.
DEFAULT_ENCODING = {"cpu": "float32", "gpu": "bfloat16"}
DEFAULT_STARTUP_TIMEOUT = 900.0
DEFAULT_GRACE = 20.0
_POLL_INTERVAL = 2.0
_LOG_TAIL_LINES = 6
#: ``ValueError: ...`` or ``huggingface_hub.errors.HFValidationError: ...``: the line a traceback ends with.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(:|$)")


@dataclass
class ServeOptions:
    """What ``max serve`` is started with; ``None`` leaves MAX's default (or picks one, for the port)."""

    model: str
    port_dir: Path
    device: str = "cpu"
    encoding: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    max_length: int | None = None
    max_batch_size: int | None = None
    served_model_name: str | None = None
    log_path: Path | None = None
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    grace: float = DEFAULT_GRACE

    @property
    def resolved_encoding(self) -> str:
        return self.encoding or DEFAULT_ENCODING[self.device]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def max_executable() -> str:
    """The ``max`` CLI next to this Python first (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "max"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("max")
    if found is None:
        raise UserError("the `max` command was not found; install max[serve] in this environment")
    return found


def serve_command(options: ServeOptions, port: int) -> list[str]:
    """The exact ``max serve`` argument list for ``options`` on ``port``."""
    cmd = [
        max_executable(), "serve",
        "--model", options.model,
        "--custom-architectures", str(options.port_dir),
        "--devices", options.device,
        "--quantization-encoding", options.resolved_encoding,
        "--host", options.host,
        "--port", str(port),
    ]
    if options.max_length is not None:
        cmd += ["--max-length", str(options.max_length)]
    if options.max_batch_size is not None:
        cmd += ["--max-batch-size", str(options.max_batch_size)]
    if options.served_model_name:
        cmd += ["--served-model-name", options.served_model_name]
    return cmd


def server_env(model: str) -> dict[str, str]:
    """The environment for the server: telemetry off; offline when the checkpoint is on disk."""
    env = dict(os.environ)
    env.setdefault("MAX_SERVE_DISABLE_TELEMETRY", "1")
    if Path(model).is_dir():
        env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last exception line of a log if it has one, else its last non-blank lines, as one line."""
    try:
        with open_regular(path, "server log") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - MAX_LOG_TAIL_BYTES))
            text = handle.read(MAX_LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    except (OSError, UserError):
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in kept if _EXCEPTION_LINE.match(line)]
    joined = errors[-1] if errors else " | ".join(kept[-lines:]) or "(empty log)"
    return joined if len(joined) <= 900 else joined[:897] + "..."


class MaxServer:
    """``with MaxServer(options) as server:`` starts ``max serve`` and waits until it answers."""

    def __init__(self, options: ServeOptions) -> None:
        if options.device not in DEVICES:
            raise UserError(f"device {options.device!r}: choose one of {', '.join(DEVICES)}")
        if not options.port_dir.is_dir():
            raise UserError(f"{options.port_dir}: no such port directory")
        self.options = options
        self.port = options.port if options.port is not None else free_port(options.host)
        self.command = serve_command(options, self.port)
        self.log_path = options.log_path or _default_log_path(options.port_dir.name, self.port)
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_after: float | None = None
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def __enter__(self) -> MaxServer:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if self.process is not None:
            return
        if port_in_use(self.options.host, self.port):
            raise UserError(f"port {self.port} on {self.options.host} is already in use; pick another with --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            log.write(f"$ {self.command_line}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=server_env(self.options.model),
                                            start_new_session=True)
        atexit.register(self.stop)
        self._started_at = time.monotonic()

    def wait_ready(self) -> float:
        """Poll ``/v1/models`` until it answers 200; seconds from start to ready."""
        process = self._require_process()
        deadline = self._started_at + self.options.startup_timeout
        with httpx.Client(timeout=5.0) as client:
            while True:
                code = process.poll()
                if code is not None:
                    raise UserError(f"max serve exited with code {code} before it was ready (log {self.log_path}): "
                                    f"{log_tail(self.log_path)}")
                if _answers(client, f"{self.url}/v1/models"):
                    self.ready_after = time.monotonic() - self._started_at
                    return self.ready_after
                if time.monotonic() > deadline:
                    raise UserError(f"max serve was not ready after {self.options.startup_timeout:.0f}s "
                                    f"(log {self.log_path}): {log_tail(self.log_path)}")
                time.sleep(_POLL_INTERVAL)

    def wait(self) -> int:
        """Block until the server exits by itself; its exit code."""
        return self._require_process().wait()

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after the grace period."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        pgid = process.pid  # start_new_session: the server leads its own group
        _signal_group(pgid, signal.SIGTERM)
        if not _wait_group(process, pgid, self.options.grace):
            _signal_group(pgid, signal.SIGKILL)
            _wait_group(process, pgid, 10.0)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError("MaxServer.start() was not called")
        return self.process


def _default_log_path(slug: str, port: int) -> Path:
    return cache_root() / "serve-logs" / f"{slug}-{port}.log"


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group(process: subprocess.Popen[bytes], pgid: int, timeout: float) -> bool:
    """Reap the leader and wait for the rest of its group to go; True when nothing is left in time."""
    deadline = time.monotonic() + timeout
    while True:
        process.poll()
        if process.returncode is not None and not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
