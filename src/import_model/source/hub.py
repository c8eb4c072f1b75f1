"""A model repo on the Hugging Face hub (or any mirror behind ``HF_ENDPOINT``).

All traffic goes through ``huggingface_hub``: ``model_info`` lists files,
``hf_hub_download`` fetches small files into its cache, and safetensors headers
are read with range requests on ``huggingface_hub``'s own session, streamed
and capped so a server that ignores ``Range`` cannot make us download a shard.
Header bytes are cached by commit so ``HF_HUB_OFFLINE=1`` works after one
online run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
from huggingface_hub import HfApi, constants, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, http_stream_backoff

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
#: Retries for 5xx / network errors (``huggingface_hub`` backs off between them).
HUB_RETRIES = int(os.environ.get("IMPORT_MODEL_HUB_RETRIES", "3"))
HUB_TIMEOUT_S = float(os.environ.get("IMPORT_MODEL_HUB_TIMEOUT", "20"))

T = TypeVar("T")


class HubSource(ModelSource):
    kind = "hub"

    def __init__(self, repo_id: str, revision: str | None = None) -> None:
        self.repo_id = repo_id
        self.revision = revision or "main"
        self.display = repo_id if revision is None else f"{repo_id}@{revision}"
        self.bytes_fetched = 0
        self._api = HfApi(endpoint=constants.ENDPOINT)
        self._files: list[str] | None = None
        self._sha: str | None = None

    # -- listing -----------------------------------------------------------
    def files(self) -> list[str]:
        if self._files is None:
            self._files, self._sha = self._listing()
        return self._files

    @property
    def commit(self) -> str:
        self.files()
        assert self._sha is not None
        return self._sha

    def _meta_dir(self) -> Path:
        host = constants.ENDPOINT.split("://", 1)[-1].replace(":", "_").replace("/", "_")
        return cache_root() / "hub" / host / self.repo_id.replace("/", "--")

    def _listing(self) -> tuple[list[str], str]:
        ref_file = self._meta_dir() / "refs" / self.revision.replace("/", "--")
        if constants.HF_HUB_OFFLINE:
            try:
                sha = ref_file.read_text().strip()
                files = json.loads((self._meta_dir() / sha / "files.json").read_text())
            except (OSError, ValueError):
                raise UserError(
                    f"{self.display}: HF_HUB_OFFLINE is set and this repo was never inspected online; "
                    "unset HF_HUB_OFFLINE or pass a local directory"
                ) from None
            return list(files), sha
        info = self._call(
            lambda: _retrying(
                lambda: self._api.model_info(self.repo_id, revision=self.revision, timeout=HUB_TIMEOUT_S), _transient
            )
        )
        files = sorted(s.rfilename for s in (info.siblings or []))
        sha = info.sha or self.revision
        atomic_write(self._meta_dir() / sha / "files.json", json.dumps(files).encode())
        atomic_write(ref_file, sha.encode())
        return files, sha

    # -- small files -------------------------------------------------------
    def read_bytes(self, name: str) -> bytes | None:
        if name not in self.files():
            return None
        path = self._call(
            lambda: hf_hub_download(self.repo_id, name, revision=self.commit, etag_timeout=HUB_TIMEOUT_S),
            missing_ok=True,
        )
        if path is None:
            return None
        size = os.path.getsize(path)
        if size > MAX_SMALL_FILE_BYTES:
            raise UserError(f"{self.display}: {name} is {size} bytes, too large for a metadata file; it is corrupt")
        self.bytes_fetched += size
        return Path(path).read_bytes()

    # -- headers -------------------------------------------------------------
    def safetensors_header(self, name: str) -> SafetensorsHeader:
        if name not in self.files():
            raise UserError(f"{self.display}: {name} is listed in the shard index but absent from the repo")
        cached = self._meta_dir() / self.commit / "headers" / (name.replace("/", "--") + ".bin")
        if cached.is_file():
            raw = cached.read_bytes()
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
        atomic_write(cached, raw)
        return header

    def _range(self, name: str, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of a file, never reading more than asked even if Range is ignored."""
        url = hf_hub_url(self.repo_id, name, revision=self.commit, endpoint=constants.ENDPOINT)
        headers = {**build_hf_headers(), "Range": f"bytes={start}-{stop - 1}"}
        want = stop - start

        def fetch_once() -> bytes:
            failure: httpx.TransportError | None = None
            chunks: list[bytes] = []
            got = skip = 0
            with _stream(url, headers) as response:
                try:
                    if response.status_code >= 400:
                        from huggingface_hub.utils import hf_raise_for_status

                        response.read()
                        hf_raise_for_status(response)
                    skip = start if response.status_code == 200 else 0  # 200: Range ignored, body starts at 0
                    if skip + want > MAX_HEADER_BYTES + 8 + FIRST_READ_BYTES:
                        raise UserError(
                            f"{self.display}: the server ignores range requests; refusing to stream {name} whole"
                        )
                    for chunk in response.iter_bytes():
                        chunks.append(chunk)
                        got += len(chunk)
                        if got >= skip + want:
                            break
                except httpx.TransportError as exc:
                    # Raised inside the `with`, a body error re-enters http_stream_backoff's retry loop, which
                    # then yields a second response and fails with a bare RuntimeError; raise it outside.
                    failure = exc
                self.bytes_fetched += got
            if failure is not None:
                raise _BodyInterrupted() from failure
            return b"".join(chunks)[skip : skip + want]

        return self._call(lambda: _retrying(fetch_once, lambda exc: isinstance(exc, _BodyInterrupted)))

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
            raise UserError(f"{self.display}: the hub at {constants.ENDPOINT} timed out after retries; retry later") from None
        except json.JSONDecodeError as exc:  # e.g. a listing cut short by a proxy
            raise UserError(
                f"{self.display}: the hub at {constants.ENDPOINT} sent malformed JSON ({_first_line(exc)}); retry later"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise UserError(
                f"{self.display}: connection to {constants.ENDPOINT} failed ({_first_line(exc)}); check the network and retry"
            ) from None


@contextmanager
def _stream(url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    # http_stream_backoff retries 5xx and network errors, then yields the last response.
    gen = http_stream_backoff(
        "GET", url, headers=headers, timeout=HUB_TIMEOUT_S, max_retries=HUB_RETRIES, base_wait_time=0.5, max_wait_time=4
    )
    with gen as response:
        yield response


class _BodyInterrupted(Exception):
    """A response body broke off mid-stream (its cause is the transport error); worth a retry."""


def _transient(exc: Exception) -> bool:
    """Errors worth another try: network trouble, 429 and 5xx (as ``huggingface_hub`` retries), a cut-off JSON body."""
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, json.JSONDecodeError)):
        return True
    response = exc.response if isinstance(exc, HfHubHTTPError) else None
    return response is not None and response.status_code in (429, 500, 502, 503, 504)


def _retrying(fn: Callable[[], T], transient: Callable[[Exception], bool]) -> T:
    """Run ``fn``, retrying up to ``HUB_RETRIES`` times (with backoff) while it fails transiently."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= HUB_RETRIES or not transient(exc):
                if isinstance(exc, _BodyInterrupted) and exc.__cause__ is not None:
                    raise exc.__cause__ from None  # give up with the transport error itself
                raise
        time.sleep(min(4.0, 0.5 * 2**attempt))
        attempt += 1


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
