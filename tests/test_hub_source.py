"""``open_source`` / ``load_config`` / ``load_checkpoint`` on hub IDs, through the real ``huggingface_hub`` client.

Every test talks to the local mirror (``tests/support/hub_mirror.py``) over
HTTP; nothing is mocked below ``huggingface_hub``. Faults are injected at the
server, and every failure must come out as one :class:`UserError`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from import_model.errors import UserError
from import_model.source import hub as hub_module
from import_model.source import load_checkpoint, load_config, open_source
from import_model.source.checkpoint import Checkpoint
from tests.support.hub_mirror import (
    Fault,
    HubMirror,
    VirtualFile,
    huge_llama_checkpoint,
    safetensors_header,
    virtual_safetensors,
)
from tests.support.mirror_fixtures import HubEnv  # the fixtures themselves come in through tests/conftest.py

TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "vocab_size": 512}


def _tiny_tensors() -> dict[str, np.ndarray]:
    return {
        "model.embed_tokens.weight": np.ones((512, 512), dtype=np.float32),  # 1 MiB: more than one range read
        "model.layers.0.self_attn.q_proj.weight": np.zeros((64, 64), dtype=np.float16),
        "model.norm.weight": np.ones((64,), dtype=np.float32),
    }


TINY_PARAMS = 512 * 512 + 64 * 64 + 64


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A small real checkpoint: one safetensors file written by the safetensors library, plus config.json."""
    root = tmp_path / "tiny"
    root.mkdir()
    save_file(_tiny_tensors(), str(root / "model.safetensors"), metadata={"format": "pt"})
    (root / "config.json").write_text(json.dumps(TINY_CONFIG))
    (root / "README.md").write_text("# tiny\n")
    return root


@pytest.fixture
def sharded_repo(tmp_path: Path) -> Path:
    """Two real shards and the index that maps every tensor to one of them."""
    root = tmp_path / "sharded"
    root.mkdir()
    first = {"model.embed_tokens.weight": np.zeros((32, 16), dtype=np.float32)}
    second = {"model.norm.weight": np.ones((16,), dtype=np.float32), "lm_head.weight": np.zeros((32, 16), np.float16)}
    save_file(first, str(root / "model-00001-of-00002.safetensors"))
    save_file(second, str(root / "model-00002-of-00002.safetensors"))
    weight_map = {name: "model-00001-of-00002.safetensors" for name in first}
    weight_map.update({name: "model-00002-of-00002.safetensors" for name in second})
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (root / "config.json").write_text(json.dumps(TINY_CONFIG))
    return root


def _inspect(model: str, revision: str | None = None) -> tuple[dict, Checkpoint]:
    source = open_source(model, revision=revision)
    return load_config(source), load_checkpoint(source)


def _small_virtual_repo() -> dict[str, bytes | VirtualFile]:
    """A 3-shard virtual Llama (~11 GB declared) for fault tests: quick to serve, still huge."""
    checkpoint = huge_llama_checkpoint(num_shards=3, num_layers=4)
    return dict(checkpoint.files)


# -- the happy paths -----------------------------------------------------------------


def test_small_repo_config_and_checkpoint(hub_env: HubEnv, tiny_repo: Path) -> None:
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    source = open_source("org/tiny")
    assert source.kind == "hub" and source.display == "org/tiny"
    assert source.files() == ["README.md", "config.json", "model.safetensors"]
    assert load_config(source) == TINY_CONFIG

    checkpoint = load_checkpoint(source)
    assert checkpoint.weight_format == "safetensors" and checkpoint.shards == ["model.safetensors"]
    shapes = {name: (t.dtype, t.shape) for name, t in checkpoint.tensors.items()}
    assert shapes == {
        "model.embed_tokens.weight": ("F32", (512, 512)),
        "model.layers.0.self_attn.q_proj.weight": ("F16", (64, 64)),
        "model.norm.weight": ("F32", (64,)),
    }
    assert checkpoint.parameter_count == TINY_PARAMS
    assert checkpoint.metadata == {"format": "pt"}
    # Only the header was wanted: one range request, far less than the 1 MiB file.
    size = (tiny_repo / "model.safetensors").stat().st_size
    hub_env.mirror.wait_idle()
    assert hub_env.mirror.count_requests("*/model.safetensors") == 1
    assert hub_env.mirror.bytes_sent_for("org/tiny/model.safetensors") <= hub_module.FIRST_READ_BYTES < size


def test_sharded_repo_with_index(hub_env: HubEnv, sharded_repo: Path) -> None:
    hub_env.mirror.add_repo("org/sharded", sharded_repo)
    config, checkpoint = _inspect("org/sharded")
    assert config["model_type"] == "llama"
    assert checkpoint.shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert {name: t.shard for name, t in checkpoint.tensors.items()} == {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00002-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }
    assert checkpoint.parameter_count == 32 * 16 + 16 + 32 * 16
    assert checkpoint.total_bytes == 32 * 16 * 4 + 16 * 4 + 32 * 16 * 2


def test_huge_virtual_checkpoint_reads_headers_only(hub_env: HubEnv) -> None:
    huge = huge_llama_checkpoint()
    hub_env.mirror.add_repo("meta/huge-70b", huge.files)
    assert len(huge.shards) == 30 and huge.declared_size > 100 * 10**9

    started = time.monotonic()
    config, checkpoint = _inspect("meta/huge-70b")
    assert time.monotonic() - started < 10
    assert config["num_hidden_layers"] == 80
    assert checkpoint.shards == huge.shards
    assert len(checkpoint.tensors) == huge.tensor_count
    assert checkpoint.parameter_count == huge.parameter_count
    assert 70 * 10**9 < checkpoint.parameter_count < 71 * 10**9
    assert (
        checkpoint.total_bytes
        == huge.total_bytes
        == json.loads(huge.files["model.safetensors.index.json"])["metadata"]["total_size"]
    )

    mirror = hub_env.mirror
    mirror.wait_idle()
    # One range request per shard, never a plain GET, and never more than one first read of each.
    shard_requests = [r for r in mirror.requests if r.path.endswith(".safetensors")]
    assert len(shard_requests) == 30
    assert all(r.method == "GET" and r.range == f"bytes=0-{hub_module.FIRST_READ_BYTES - 1}" for r in shard_requests)
    assert all(r.status == 206 for r in shard_requests)
    # Each shard costs one first read (FIRST_READ_BYTES) of which its ~3 KiB header is the useful part.
    small_files = sum(len(huge.files[n]) for n in ("config.json", "model.safetensors.index.json"))  # type: ignore[arg-type]
    assert mirror.bytes_sent_for("meta/huge-70b/*.safetensors") <= 30 * hub_module.FIRST_READ_BYTES
    assert mirror.bytes_sent <= 30 * hub_module.FIRST_READ_BYTES + small_files + 64 * 1024
    assert mirror.bytes_sent < huge.declared_size / 10_000
    assert mirror.bytes_sent <= 512 * 1024  # a few hundred KiB for a ~141 GB checkpoint

    # A second run finds every header in import-model's cache: no shard traffic at all.
    mirror.reset_counters()
    _, again = _inspect("meta/huge-70b")
    assert again.parameter_count == huge.parameter_count
    assert mirror.count_requests("*.safetensors") == 0


def test_header_larger_than_first_read_takes_exactly_two_ranges(hub_env: HubEnv) -> None:
    specs = {
        f"model.layers.{i}.mlp.experts.{j}.down_proj.weight": ("BF16", [4096, 1024])
        for i in range(4)
        for j in range(900)
    }
    shard = virtual_safetensors(specs)
    header_len = len(shard.head)
    assert header_len > hub_module.FIRST_READ_BYTES
    hub_env.mirror.add_repo("org/moe", {"config.json": b"{}", "model.safetensors": shard})

    _, checkpoint = _inspect("org/moe")
    assert len(checkpoint.tensors) == 3600
    assert checkpoint.parameter_count == 3600 * 4096 * 1024
    hub_env.mirror.wait_idle()
    ranges = [r.range for r in hub_env.mirror.requests if r.path.endswith("model.safetensors")]
    first = hub_module.FIRST_READ_BYTES
    assert ranges == [f"bytes=0-{first - 1}", f"bytes={first}-{header_len - 1}"]
    assert hub_env.mirror.bytes_sent_for("org/moe/model.safetensors") == header_len


def test_revision_is_honoured(hub_env: HubEnv, tiny_repo: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    save_file({"w": np.zeros((3, 5), dtype=np.float32)}, str(old / "model.safetensors"))
    (old / "config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_size": 5}))
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    old_sha = hub_env.mirror.add_repo("org/tiny", old, revision="v0.1")

    config, checkpoint = _inspect("org/tiny", revision="v0.1")
    assert config["hidden_size"] == 5 and checkpoint.parameter_count == 15
    source = open_source("org/tiny", revision="v0.1")
    assert source.display == "org/tiny@v0.1" and source.commit == old_sha  # type: ignore[attr-defined]
    main_config, main_checkpoint = _inspect("org/tiny")
    assert main_config == TINY_CONFIG and main_checkpoint.parameter_count == TINY_PARAMS
    # A commit sha works as a revision too.
    assert _inspect("org/tiny", revision=old_sha)[0]["hidden_size"] == 5

    with pytest.raises(UserError, match=r"revision 'v9' does not exist"):
        open_source("org/tiny", revision="v9").files()


def test_offline_mode_after_one_online_run(hub_env: HubEnv, sharded_repo: Path) -> None:
    hub_env.mirror.add_repo("org/sharded", sharded_repo)
    online = _inspect("org/sharded")
    seen = len(hub_env.mirror.requests)

    hub_env.offline()
    offline = _inspect("org/sharded")
    assert offline[0] == online[0]
    assert offline[1].tensors == online[1].tensors and offline[1].shards == online[1].shards
    assert len(hub_env.mirror.requests) == seen  # not one request went out

    with pytest.raises(UserError, match="never inspected online"):
        open_source("org/other").files()
    with pytest.raises(UserError, match="never inspected online"):
        open_source("org/sharded", revision="v2").files()


def test_subprocess_sees_the_mirror_through_env_vars(hub_env: HubEnv, tiny_repo: Path) -> None:
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    code = (
        "from import_model.source import open_source, load_checkpoint, load_config\n"
        "s = open_source('org/tiny'); print(load_config(s)['hidden_size'], load_checkpoint(s).parameter_count)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=hub_env.subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["64", str(TINY_PARAMS)]
    assert hub_env.mirror.count_requests("api/models/org/tiny/*") == 1
    # Small files are cached by commit in import-model's own cache (not huggingface_hub's).
    cached = list(hub_env.import_model_cache.glob("hub/*/org--tiny/*/files/config.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_bytes()) == TINY_CONFIG


# -- refusals from the hub -------------------------------------------------------------


def test_unknown_repo(hub_env: HubEnv) -> None:
    with pytest.raises(UserError, match="not found") as info:
        open_source("org/missing").files()
    assert "org/missing" in str(info.value) and hub_env.endpoint in str(info.value)


@pytest.mark.parametrize("status", [401, 404])
def test_repo_not_found_code_on_either_status(hub_env: HubEnv, tiny_repo: Path, status: int) -> None:
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    hub_env.mirror.inject(Fault.repo_not_found("api/*", status=status))
    with pytest.raises(UserError, match="not found"):
        _inspect("org/tiny")


def test_gated_repo_needs_a_token(hub_env: HubEnv, tiny_repo: Path) -> None:
    hub_env.mirror.add_repo("org/gated", tiny_repo, gated_token="hf_test_token")
    with pytest.raises(UserError, match="gated") as info:
        _inspect("org/gated")
    assert "HF_TOKEN" in str(info.value)

    hub_env.token("hf_test_token")
    config, checkpoint = _inspect("org/gated")
    assert config == TINY_CONFIG and checkpoint.parameter_count == TINY_PARAMS


@pytest.mark.parametrize("pattern", ["*/config.json", "*.safetensors"])
def test_gated_answer_on_a_file(hub_env: HubEnv, tiny_repo: Path, pattern: str) -> None:
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    fault = hub_env.mirror.inject(Fault.gated(pattern))
    with pytest.raises(UserError, match="gated.*HF_TOKEN"):
        _inspect("org/tiny")
    assert fault.hits >= 1


def test_file_listed_but_404(hub_env: HubEnv, tiny_repo: Path) -> None:
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    hub_env.mirror.inject(Fault.not_found("*/config.json"))
    with pytest.raises(UserError, match="no config.json found"):
        load_config(open_source("org/tiny"))


# -- server errors, retries and timeouts ------------------------------------------------


@pytest.mark.parametrize("pattern", ["api/*", "*/config.json", "*.safetensors"])
def test_server_error_then_success_is_retried(hub_env: HubEnv, pattern: str) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=2)
    fault = hub_env.mirror.inject(Fault.server_error(pattern, times=2))
    config, checkpoint = _inspect("org/huge")
    assert fault.hits == 2
    assert config["model_type"] == "llama" and len(checkpoint.shards) == 3


@pytest.mark.parametrize("pattern", ["api/*", "*.safetensors"])
def test_persistent_server_error(hub_env: HubEnv, pattern: str) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=1)
    fault = hub_env.mirror.inject(Fault.server_error(pattern, status=503))
    started = time.monotonic()
    with pytest.raises(UserError, match="HTTP 503.*retry later"):
        _inspect("org/huge")
    assert fault.hits == 2  # the first try and one retry
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("pattern", ["api/*", "*.safetensors"])
def test_slow_server_times_out(hub_env: HubEnv, pattern: str) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=1, timeout_s=0.3)
    fault = hub_env.mirror.inject(Fault.slow(pattern, seconds=5))
    started = time.monotonic()
    with pytest.raises(UserError, match="timed out"):
        _inspect("org/huge")
    assert time.monotonic() - started < 4
    assert fault.hits == 2


def test_slow_but_within_timeout_succeeds(hub_env: HubEnv) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=0, timeout_s=3)
    fault = hub_env.mirror.inject(Fault.slow("*", seconds=0.1, times=3))
    _, checkpoint = _inspect("org/huge")
    assert fault.hits == 3 and len(checkpoint.shards) == 3


# -- broken transfers ---------------------------------------------------------------------


@pytest.mark.parametrize("after_bytes", [0, 7, 100])
def test_connection_cut_mid_header(hub_env: HubEnv, after_bytes: int) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=1)
    fault = hub_env.mirror.inject(Fault.cut("*.safetensors", after_bytes=after_bytes))
    with pytest.raises(UserError, match="connection to .* failed"):
        _inspect("org/huge")
    assert fault.hits == 2

    # Nothing half-read was cached: with the mirror healthy, a new run succeeds.
    hub_env.mirror.clear_faults()
    _, checkpoint = _inspect("org/huge")
    assert len(checkpoint.shards) == 3 and checkpoint.parameter_count > 0


def test_connection_cut_once_is_retried(hub_env: HubEnv) -> None:
    huge = huge_llama_checkpoint(num_shards=3, num_layers=4)
    hub_env.mirror.add_repo("org/huge", huge.files)
    hub_env.fast_failures(retries=1)
    fault = hub_env.mirror.inject(Fault.cut("*model-00002-*", after_bytes=50, times=1))
    _, checkpoint = _inspect("org/huge")
    assert fault.hits == 1 and checkpoint.parameter_count == huge.parameter_count


@pytest.mark.parametrize("pattern", ["api/*", "*/config.json"])
def test_connection_cut_in_small_files(hub_env: HubEnv, pattern: str) -> None:
    """A cut listing or a cut config download is retried."""
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=1)
    fault = hub_env.mirror.inject(Fault.cut(pattern, after_bytes=20, times=1, method="GET"))
    config, _ = _inspect("org/huge")
    assert fault.hits == 1 and config["num_hidden_layers"] == 4


def test_persistent_cut_listing(hub_env: HubEnv) -> None:
    hub_env.mirror.add_repo("org/huge", _small_virtual_repo())
    hub_env.fast_failures(retries=1)
    hub_env.mirror.inject(Fault.cut("api/*", after_bytes=20))
    with pytest.raises(UserError, match="connection to .* failed"):
        open_source("org/huge").files()


def test_server_ignoring_range_never_streams_a_shard(hub_env: HubEnv) -> None:
    huge = huge_llama_checkpoint(num_shards=3, num_layers=4)
    hub_env.mirror.add_repo("org/huge", huge.files)
    fault = hub_env.mirror.inject(Fault.ignore_range("*.safetensors"))
    _, checkpoint = _inspect("org/huge")
    assert fault.hits == 3
    assert checkpoint.parameter_count == huge.parameter_count

    mirror = hub_env.mirror
    assert mirror.wait_idle(10)
    assert all(r.status == 200 for r in mirror.requests if r.path.endswith(".safetensors"))
    # The client stops after its first read and drops the connection; what else left the server
    # is whatever the kernel buffered, nowhere near a shard (each declares ~3.7 GB).
    for shard in huge.shards:
        sent = mirror.bytes_sent_for(f"org/huge/{shard}")
        assert hub_module.FIRST_READ_BYTES <= sent < 16 * 1024 * 1024, (shard, sent)
    assert huge.declared_size > 10 * 10**9


def test_server_ignoring_range_on_a_header_past_the_first_read(hub_env: HubEnv) -> None:
    specs = {
        f"model.layers.{i}.mlp.experts.{j}.up_proj.weight": ("BF16", [2048, 512]) for i in range(4) for j in range(900)
    }
    shard = virtual_safetensors(specs)
    assert len(shard.head) > hub_module.FIRST_READ_BYTES
    hub_env.mirror.add_repo("org/moe", {"config.json": b"{}", "model.safetensors": shard})
    fault = hub_env.mirror.inject(Fault.ignore_range("*.safetensors"))
    _, checkpoint = _inspect("org/moe")
    assert len(checkpoint.tensors) == 3600 and fault.hits == 2  # two reads, both answered from byte 0
    hub_env.mirror.wait_idle(10)
    assert hub_env.mirror.bytes_sent_for("org/moe/model.safetensors") < 16 * 1024 * 1024 < shard.size


@pytest.mark.parametrize(
    ("pattern", "delta", "method", "times", "outcome"),
    [
        # Range reads stop at what they asked for, so a lie about the length goes unnoticed.
        ("*.safetensors", 100, None, 2, None),
        ("*.safetensors", -100, None, 2, None),
        # ... unless the declared length cuts into the header itself.
        ("*.safetensors", -(hub_module.FIRST_READ_BYTES - 100), None, None, "ends after 100 bytes, inside its .* header"),
        # A small file is one GET: a length that stops short cuts the JSON ...
        ("*/config.json", -10, "GET", 2, "config.json is not valid JSON"),
        ("*/config.json", -10, None, 2, "config.json is not valid JSON"),
        # ... and one that promises more than is sent is a connection cut mid-body (retried, then reported).
        ("*/config.json", 10, None, 2, r"connection to .* failed \(peer closed connection"),
        ("*/config.json", 10, None, 1, None),
        # A listing cut short is retried like a 5xx, then reported.
        ("api/*", -10, None, 1, None),
        ("api/*", -10, None, 2, "sent malformed JSON"),
        ("api/*", 10, None, 2, r"connection to .* failed \(peer closed connection"),
    ],
)
def test_wrong_content_length(
    hub_env: HubEnv, pattern: str, delta: int, method: str | None, times: int | None, outcome: str | None
) -> None:
    huge = huge_llama_checkpoint(num_shards=3, num_layers=4)
    hub_env.mirror.add_repo("org/huge", huge.files)
    hub_env.fast_failures(retries=1)
    fault = hub_env.mirror.inject(Fault.wrong_length(pattern, delta=delta, method=method, times=times))
    if outcome is None:
        config, checkpoint = _inspect("org/huge")
        assert config["num_hidden_layers"] == 4
        assert checkpoint.parameter_count == huge.parameter_count
    else:
        with pytest.raises(UserError, match=outcome):
            _inspect("org/huge")
    assert fault.hits >= 1


def test_truncated_header_is_refused(hub_env: HubEnv) -> None:
    """A shard shorter than the header it declares: the server sends all it has, and we refuse."""
    head = safetensors_header({"w": ("F32", [4, 4])})
    hub_env.mirror.add_repo("org/trunc", {"config.json": b"{}", "model.safetensors": head[:-10]})
    with pytest.raises(
        UserError, match="model.safetensors ends after .* bytes, inside its .* header; the file is truncated"
    ):
        _inspect("org/trunc")


# -- broken repos ------------------------------------------------------------------------


def test_shard_in_index_but_absent(hub_env: HubEnv, sharded_repo: Path) -> None:
    (sharded_repo / "model-00002-of-00002.safetensors").unlink()
    hub_env.mirror.add_repo("org/sharded", sharded_repo)
    with pytest.raises(UserError, match="model-00002-of-00002.safetensors is listed in model.safetensors.index.json"):
        _inspect("org/sharded")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b'{"model_type": "llama",', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[1, 2, 3]", "holds a JSON list, not an object"),
        (b'"llama"', "holds a JSON str"),
    ],
)
def test_bad_config_json(hub_env: HubEnv, tiny_repo: Path, content: bytes, needle: str) -> None:
    (tiny_repo / "config.json").write_bytes(content)
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    with pytest.raises(UserError, match=needle) as info:
        load_config(open_source("org/tiny"))
    assert "config.json" in str(info.value)


def test_missing_config_json(hub_env: HubEnv, tiny_repo: Path) -> None:
    (tiny_repo / "config.json").unlink()
    hub_env.mirror.add_repo("org/tiny", tiny_repo)
    with pytest.raises(UserError, match="no config.json found"):
        load_config(open_source("org/tiny"))


# -- the mirror itself ---------------------------------------------------------------------


def test_mirror_speaks_ranges_and_counts_bytes(hub_mirror: HubMirror) -> None:
    import httpx

    virtual = VirtualFile(head=b"HEADER", size=10_000_000_000)
    hub_mirror.add_repo("org/m", {"a.bin": b"0123456789", "big.bin": virtual, "c.bin": b"c"})
    base = f"{hub_mirror.endpoint}/org/m/resolve/main"
    with httpx.Client() as client:
        head = client.head(f"{base}/big.bin")
        assert head.status_code == 200 and head.headers["Content-Length"] == "10000000000"
        assert head.headers["X-Repo-Commit"] and head.headers["ETag"] and head.headers["Accept-Ranges"] == "bytes"
        part = client.get(f"{base}/big.bin", headers={"Range": "bytes=2-9"})
        assert part.status_code == 206 and part.content == b"ADER\0\0\0\0"
        assert part.headers["Content-Range"] == "bytes 2-9/10000000000"
        assert client.get(f"{base}/a.bin", headers={"Range": "bytes=-3"}).content == b"789"
        assert client.get(f"{base}/a.bin", headers={"Range": "bytes=5-100"}).content == b"56789"
        assert client.get(f"{base}/c.bin", headers={"Range": "bytes=1-"}).status_code == 416
        missing = client.get(f"{base}/nope.bin")
        assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
        info = client.get(f"{hub_mirror.endpoint}/api/models/org/m").json()
        assert [s["rfilename"] for s in info["siblings"]] == ["a.bin", "big.bin", "c.bin"] and len(info["sha"]) == 40
    assert hub_mirror.wait_idle()
    assert hub_mirror.bytes_sent_for("org/m/big.bin") == 8
    assert hub_mirror.bytes_sent_for("org/m/a.bin") == 3 + 5
    assert hub_mirror.count_requests("org/m/*", method="HEAD") == 1
