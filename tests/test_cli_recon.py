"""The four recon commands, run as a user runs them (a subprocess), on real checkpoints.

Each family's tiny twin is served twice: from its local directory and from the
local hub mirror through the real ``huggingface_hub`` client. Both must give
the same answers, and the answers must match the checkpoint and the family's
known config quirks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from safetensors import safe_open

from import_model.procs import child_env
from tests.support.families import family_twin_dir
from tests.support.hub_mirror import HubMirror


@dataclass(frozen=True)
class Expect:
    architecture: str
    #: Config keys whose value needs graph code in a port.
    graph_keys: set[str] = field(default_factory=set)
    #: check-walls exit code, and a finding code that must be present.
    walls_exit: int = 0
    wall_code: str | None = None


EXPECTED = {
    "helium": Expect("HeliumForCausalLM"),
    "stablelm": Expect("StableLmForCausalLM", {"partial_rotary_factor", "layer_norm_eps"}),
    "gemma2": Expect("Gemma2ForCausalLM", {"final_logit_softcapping", "attn_logit_softcapping", "query_pre_attn_scalar"}),
    "cohere": Expect("CohereForCausalLM", {"logit_scale", "layer_norm_eps"}),
    "starcoder2": Expect("Starcoder2ForCausalLM", {"use_bias", "hidden_act"}),
    "bloom": Expect("BloomForCausalLM", walls_exit=1, wall_code="alibi"),
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "import_model", *args], capture_output=True, text=True,
                          env=child_env() if env is None else env, timeout=180)


def json_of(result: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def checkpoint_truth(directory: Path) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Parameter count and shapes read with the safetensors library itself."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    total = 0
    for shape in shapes.values():
        count = 1
        for dim in shape:
            count *= dim
        total += count
    return total, shapes


@pytest.fixture(scope="module")
def mirror() -> Iterator[HubMirror]:
    with HubMirror() as server:
        for family in EXPECTED:
            server.add_repo(f"twins/{family}", family_twin_dir(family))
        yield server


@pytest.fixture(scope="module")
def mirror_env(mirror: HubMirror, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hub")
    env = dict(os.environ)
    env.update(HF_ENDPOINT=mirror.endpoint, HF_HOME=str(root / "hf"), IMPORT_MODEL_CACHE=str(root / "im"),
               HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1", IMPORT_MODEL_HUB_RETRIES="1")
    env.pop("HF_TOKEN", None)
    return env


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_recon_commands_on_family_twins(family: str, mirror_env: dict[str, str]) -> None:
    expect = EXPECTED[family]
    local = family_twin_dir(family)
    true_params, true_shapes = checkpoint_truth(local)
    config = json.loads((local / "config.json").read_text())

    answers = {}
    for where, model, env in (("local", str(local), None), ("hub", f"twins/{family}", mirror_env)):
        inspected = json_of(run_cli("inspect", model, "--json", env=env))
        assert inspected["architecture"] == expect.architecture
        assert inspected["native"] == [] and inspected["serve_command"] is None
        assert inspected["checkpoint"]["parameters"] == true_params
        graph = {row["key"] for row in inspected["config"] if row["role"] == "graph"}
        assert expect.graph_keys <= graph, f"{where}: {expect.graph_keys - graph} not flagged"
        assert {row["key"] for row in inspected["config"]} >= set(config)

        listed = json_of(run_cli("list-keys", model, "--json", env=env))
        assert {t["name"]: tuple(t["shape"]) for t in listed["tensors"]} == true_shapes

        summary = json_of(run_cli("list-keys", model, "--summary", "--json", env=env))
        assert summary["totals"]["parameters"] == true_params
        per_layer = [p for p in summary["patterns"] if "{i}" in p["pattern"]]
        layers = config.get("num_hidden_layers") or config["n_layer"]
        assert per_layer and all(p["count"] % layers == 0 for p in per_layer)

        walls = run_cli("check-walls", model, "--json", env=env)
        assert walls.returncode == expect.walls_exit, walls.stdout + walls.stderr
        codes = {f["code"] for f in json_of(walls)["findings"]}
        if expect.wall_code:
            assert any(expect.wall_code in code for code in codes), codes
        answers[where] = (inspected["config"], inspected["checkpoint"], summary["patterns"], codes)

    assert answers["local"] == answers["hub"]
    match = run_cli("list-archs", "--match", expect.architecture)
    assert match.returncode == 1 and "not registered" in match.stdout


@pytest.mark.slow
def test_smollm2_is_native_llama(smollm2_dir: Path, mirror: HubMirror, mirror_env: dict[str, str]) -> None:
    inspected = json_of(run_cli("inspect", str(smollm2_dir), "--json"))
    assert inspected["architecture"] == "LlamaForCausalLM"
    assert [n["slug"] for n in inspected["native"]] == ["llama3"]
    assert inspected["serve_command"] == f"max serve --model {smollm2_dir}"
    true_params, _ = checkpoint_truth(smollm2_dir)
    assert inspected["checkpoint"]["parameters"] == true_params
    assert 130e6 < true_params < 140e6

    # The same answers through the hub mirror, fetching headers only (the weights are ~260 MB).
    mirror.add_repo("HuggingFaceTB/SmolLM2-135M-Instruct", smollm2_dir)
    mirror.reset_counters()
    hub = json_of(run_cli("inspect", "HuggingFaceTB/SmolLM2-135M-Instruct", "--json", env=mirror_env))
    assert hub["serve_command"] == "max serve --model HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub["checkpoint"] == inspected["checkpoint"] and hub["config"] == inspected["config"]
    mirror.wait_idle()
    assert mirror.bytes_sent_for("HuggingFaceTB/SmolLM2-135M-Instruct/*.safetensors") < 256 * 1024
    hub_walls = run_cli("check-walls", "HuggingFaceTB/SmolLM2-135M-Instruct", env=mirror_env)
    assert hub_walls.returncode == 0

    human = run_cli("inspect", str(smollm2_dir))
    assert human.returncode == 0 and "natively" in human.stdout and "check-native" in human.stdout

    summary = json_of(run_cli("list-keys", str(smollm2_dir), "--summary", "--json"))
    rows = {p["pattern"]: p for p in summary["patterns"]}
    assert rows["model.layers.{i}.self_attn.q_proj.weight"]["count"] == 30
    assert rows["model.layers.{i}.self_attn.k_proj.weight"]["shape"] == [192, 576]  # 3 KV heads x 64

    assert run_cli("check-walls", str(smollm2_dir)).returncode == 0
    match = run_cli("list-archs", "--match", "LlamaForCausalLM")
    assert match.returncode == 0 and "llama3" in match.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["inspect", "/no/such/dir"], "no such directory"),
        (["inspect", "not a model id"], "not a hub ID"),
        (["list-keys", "org/name", "--revision", "main", "--prefix", "x"], "repo not found"),
    ],
)
def test_bad_model_arguments_give_one_line(args: list[str], needle: str, mirror_env: dict[str, str]) -> None:
    result = run_cli(*args, env=mirror_env)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2, 3]", "not an object"),
        ('"just a string"', "not an object"),
    ],
)
def test_malformed_config_json(tmp_path: Path, content: str, needle: str) -> None:
    (tmp_path / "config.json").write_text(content)
    for command in ("inspect", "check-walls"):
        result = run_cli(command, str(tmp_path))
        assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr


def test_index_naming_an_absent_shard(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    result = run_cli("list-keys", str(tmp_path))
    assert result.returncode == 2
    assert "model-00001-of-00002.safetensors" in result.stderr and "absent" in result.stderr


def test_pickle_only_checkpoint_is_refused_without_unpickling(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    marker = tmp_path / "pwned"
    # A pickle that would create `marker` if anything unpickled it.
    payload = (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    (tmp_path / "pytorch_model.bin").write_bytes(payload)
    result = run_cli("list-keys", str(tmp_path))
    assert result.returncode == 2 and "pickle" in result.stderr
    walls = run_cli("check-walls", str(tmp_path))
    assert walls.returncode == 2
    assert not marker.exists()


@pytest.mark.parametrize("command", ["inspect", "list-archs", "list-keys", "check-walls", "twin"])
def test_help_on_every_command(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: import-model " + command in result.stdout


@pytest.mark.parametrize("script", ["inspect_hf.py", "list_native_archs.py", "list_checkpoint_keys.py",
                                    "check_walls.py", "import_model.py"])
def test_seed_scripts_share_the_cli(script: str) -> None:
    path = Path(__file__).resolve().parent.parent / "scripts" / script
    args = ["list-archs", "--match", "LlamaForCausalLM"] if script == "import_model.py" else ["--help"]
    if script == "list_native_archs.py":
        args = ["--match", "NoSuchModelForCausalLM"]
    result = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=60,
                            env=child_env())
    expected = 1 if script == "list_native_archs.py" else 0
    assert result.returncode == expected, result.stderr
    assert "Traceback" not in result.stderr


def test_list_archs_shows_every_task_marked() -> None:
    everything = json_of(run_cli("list-archs", "--json"))["architectures"]
    tasks = {row["task"] for row in everything}
    assert {"TEXT_GENERATION", "EMBEDDINGS_GENERATION", "PIXEL_GENERATION"} <= tasks and "unknown" not in tasks
    rows = {(row["architecture"], row["slug"]): row for row in everything}
    assert rows[("BertModel", "bert")]["task_label"] == "embeddings"
    assert rows[("Gemma3ForConditionalGeneration", "gemma3multimodal")]["inputs"] == ["TEXT", "IMAGE"]
    assert json_of(run_cli("list-archs", "--all-tasks", "--json"))["architectures"] == everything  # the old flag
    text = run_cli("list-archs")
    assert text.returncode == 0
    assert "embeddings" in text.stdout and "text generation, multimodal (image)" in text.stdout
    donors = json_of(run_cli("list-archs", "--donors", "--json"))["architectures"]
    assert donors and all(row["donor"] and row["task"] == "TEXT_GENERATION" for row in donors)
    assert run_cli("list-archs", "--match", "BertModel").returncode == 0
