"""Fine-tuning a published 4M with a modality it was not trained on (``model.init`` with another key set).

The checkpoint is made here in the official hub layout (ml-4m's ``config.json`` + ``model.safetensors``, the
swiglu_nobias recipe at a tiny width) over part of the synthetic world's keys, named at 224 px as 4M-21's are, plus
one key the run does not have; the run trains on the world at 64 px with one more key (``det``). What is checked is
the promise of :mod:`fourm_core.training.warmstart`: shared keys and the trunk start equal to the checkpoint, the new
key starts as the network's own fresh init, the dropped key is listed, sizes come from the checkpoint unless the
run names other ones (then one line), and the run trains and exports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from fourm_core.errors import UserError
from fourm_core.keys import KeyTable
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.training.config import RunConfig
from fourm_core.training.data import TrainingData
from fourm_core.training.engine import train
from fourm_core.training.warmstart import (
    InitCheckpoint,
    InitError,
    build_network,
    network_config,
    read_init,
    warm_start,
)
from fourm_core.vocab import TextVocabulary
from helpers import EXAMPLE_PLUGIN, small_world

PRESET = "tiny"
LABELLED = ["rgb", "depth", "caption", "det"]
#: the checkpoint's trunk: what the run adopts when it names no size
TRUNK = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}
NEW = "det"
DROPPED = "tok_normal@224"
#: the run's keys (64 px preset) -> the checkpoint's names (224 px, as the official models name them)
AT_224 = {"tok_depth@64": "tok_depth@224", "rgb@64": "rgb@224"}
#: the world's RGB is labelled but not tokenised (the run uses its pixels): the data says so once per open
pytestmark = pytest.mark.filterwarnings("ignore:.*not pre-tokenised:UserWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """16 labelled scenes, depth pre-tokenised (one crop), a vocabulary."""
    return small_world(tmp_path_factory.mktemp("finetune"), registry, LABELLED, ["depth"], steps=1, crops=1, scenes=16)


def run_config(world: dict[str, Path], out: Path, init: str | None, **model: object) -> RunConfig:
    return RunConfig.model_validate(
        {
            "out_dir": str(out),
            "vocabulary": str(world["vocab"]),
            "datasets": [{"name": "world", "store": str(world["store"])}],
            "input_tokens": 32,
            "target_tokens": 32,
            "model": {"preset": PRESET, "init": init, **model},
            "optim": {"lr": 1e-3},
            "schedule": {"steps": 2, "warmup_steps": 1},
            "engine": {"micro_batch_size": 2, "threads": 1, "peak_gflops": 10.0},
            "log_every": 1,
        }
    )


def run_keys(world: dict[str, Path], registry: Registry, tmp_path: Path) -> KeyTable:
    config = run_config(world, tmp_path, None)
    return TrainingData(config, registry, TextVocabulary.load(config.vocabulary)).keys


@pytest.fixture(scope="module")
def official(world: dict[str, Path], registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An official-layout checkpoint: caption, tok_depth@224, rgb@224 and tok_normal@224 (not in the run); every
    weight moved off its init value so that an equality cannot come from two identical inits."""
    folder = tmp_path_factory.mktemp("official")
    keys = run_keys(world, registry, folder)
    assert NEW in keys and set(AT_224) <= set(keys)
    vocab = TextVocabulary.load(world["vocab"]).size
    names = [k for k in keys if k != NEW] + [DROPPED.replace("@224", "@64")]
    table = KeyTable.from_registry(registry, PRESET, text_vocab_size=vocab, keys=names)
    torch.manual_seed(123)
    network = FourMNetwork(fourm_config(table, "tiny", "swiglu_nobias", **TRUNK))
    with torch.no_grad():
        for p in network.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    rename = {**AT_224, DROPPED.replace("@224", "@64"): DROPPED}
    state = {}
    for name, tensor in network.state_dict().items():
        for old, new in rename.items():
            name = name.replace(f"_embeddings.{old}.", f"_embeddings.{new}.")
        if name.endswith(".pos_emb") and "@224" in name:  # the checkpoint's 224 px grid: 14 x 14 positions
            tensor = torch.randn(1, 196, tensor.shape[-1])
        state[name] = tensor.detach().clone().contiguous()
    config = network.config.to_official()
    for field in ("domains_in", "domains_out"):
        config[field] = [rename.get(k, k) for k in config[field]]
    config["image_size"] = 224
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_finetune_with_a_new_modality_starts_from_the_checkpoint(
    world: dict[str, Path], registry: Registry, official: Path, tmp_path: Path
) -> None:
    ckpt = read_init(str(official))
    assert ckpt.layout == "official"
    config = run_config(world, tmp_path / "run", str(official))
    seen: dict[str, object] = {}

    def on_init(report: object, network: torch.nn.Module) -> None:  # before DeepSpeed and any step
        seen["report"] = report
        seen["state"] = {k: v.detach().clone() for k, v in network.state_dict().items()}

    result = train(config, registry, on_init=on_init)
    state: dict[str, torch.Tensor] = seen["state"]  # type: ignore[assignment]
    report = seen["report"]
    assert result.init is report

    # shared keys (renamed across the resolution) and the whole trunk: equal to the checkpoint at step 0
    back = {v: k for k, v in AT_224.items()}
    compared = 0
    for name, tensor in ckpt.state.items():
        parts = name.split(".")
        if parts[0].endswith("_embeddings"):
            if parts[1] == DROPPED or parts[-1] == "pos_emb":  # dropped key; sin-cos tables are rebuilt
                continue
            parts[1] = back.get(parts[1], parts[1])
        ours = ".".join(parts)
        assert torch.equal(state[ours], tensor), ours
        compared += 1
    trunk = [n for n in state if not n.startswith(("encoder_embeddings", "decoder_embeddings"))]
    assert compared > len(trunk) // 2 and "mask_token" in state and "decoder_proj_context.bias" in state

    # the new key: fresh embeddings and head, the network's own init under the run's seed
    keys = run_keys(world, registry, tmp_path)
    net_config = network_config(config.model, keys, ckpt)
    torch.manual_seed(config.seed)
    fresh = FourMNetwork(net_config).state_dict()
    new_names = [n for n in state if f"_embeddings.{NEW}." in n]
    assert {f"encoder_embeddings.{NEW}.token_emb.weight", f"decoder_embeddings.{NEW}.to_logits.weight"} <= set(
        new_names
    )
    for name in new_names:
        assert torch.equal(state[name], fresh[name]), name

    # the summary: in the log (first line) and on the report
    log = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    init = log[0]
    assert init["kind"] == "init" and init["step"] == 0
    assert init["new"] == [NEW] and init["dropped"] == [DROPPED]
    assert init["renamed"] == back  # checkpoint key -> run key
    assert set(init["shared"]) == {"caption", "tok_depth@64", "rgb@64"}
    assert init["reinitialised"] == {} and init["loaded"] > 0
    assert init["adopted"]["dim"] == TRUNK["dim"]  # no size in the run config: the checkpoint's

    # it trains and exports the run's key set at the checkpoint's sizes
    assert result.steps == 2 and result.final_dir is not None
    exported = FourMNetwork.from_pretrained(result.final_dir)
    assert set(exported.keys) == set(keys) and exported.config.dim == TRUNK["dim"]
    assert any(r["kind"] == "train" for r in log)


def test_sizes_the_run_names_must_match_the_checkpoint(
    world: dict[str, Path], registry: Registry, official: Path, tmp_path: Path
) -> None:
    keys = run_keys(world, registry, tmp_path)
    ckpt = read_init(str(official))
    # named and equal: fine (size tiny with the checkpoint's overrides, the same recipe)
    same = run_config(world, tmp_path, str(official), size="tiny", recipe="swiglu_nobias", overrides=TRUNK)
    assert network_config(same.model, keys, ckpt).dim == TRUNK["dim"]
    # named and different: one line naming each difference, before anything is built
    other = run_config(world, tmp_path, str(official), recipe="gelu", overrides={**TRUNK, "dim": 64})
    with pytest.raises(InitError) as caught:
        network_config(other.model, keys, ckpt)
    message = str(caught.value)
    assert "\n" not in message and isinstance(caught.value, UserError)
    assert "dim 64 (run) vs 32 (checkpoint)" in message and "gated_mlp False (run) vs True (checkpoint)" in message
    # a behaviour field the run sets wins without complaint
    masked = run_config(world, tmp_path, str(official), overrides={"decoder_causal_mask": True})
    assert network_config(masked.model, keys, ckpt).decoder_causal_mask is True


def test_reinitialised_shapes_and_other_sources(
    world: dict[str, Path], registry: Registry, official: Path, tmp_path: Path
) -> None:
    keys = run_keys(world, registry, tmp_path)
    ckpt = read_init(str(official))
    # another text vocabulary (the official 30k): caption's tables are re-initialised with the reason
    state = dict(ckpt.state)
    for name in [n for n in state if ".caption." in n and n.endswith(("token_emb.weight", "to_logits.weight"))]:
        state[name] = torch.zeros(30000, TRUNK["dim"])
    other = InitCheckpoint("bigger-vocab", official, "official", ckpt.fields, state)
    torch.manual_seed(0)
    network = FourMNetwork(network_config(run_config(world, tmp_path, "x").model, keys, other))
    report = warm_start(network, other)
    assert set(report.reinitialised) == {
        "encoder_embeddings.caption.token_emb.weight",
        "decoder_embeddings.caption.token_emb.weight",
        "decoder_embeddings.caption.to_logits.weight",
    }
    assert "(30000, 32) in the checkpoint" in report.reinitialised["decoder_embeddings.caption.to_logits.weight"]
    assert any("re-initialised decoder_embeddings.caption.to_logits.weight" in line for line in report.lines())

    # a checkpoint whose trunk tensors do not fit is refused (never half-loaded)
    broken = dict(ckpt.state)
    broken.pop("decoder_proj_context.weight")
    with pytest.raises(InitError, match="decoder_proj_context.weight"):
        warm_start(network, InitCheckpoint("broken", official, "official", ckpt.fields, broken))

    # a bare .safetensors whose metadata holds the config (ml-4m's load_safetensors layout, values as strings)
    bare = tmp_path / "4M-tiny.safetensors"
    metadata = {k: str(v) for k, v in json.loads((official / "config.json").read_text()).items()}
    save_file(ckpt.state, str(bare), metadata=metadata)
    config = run_config(world, tmp_path, str(bare))
    network, report = build_network(config, keys, registry)
    assert report is not None and report.new == [NEW] and report.dropped == [DROPPED]
    assert torch.equal(network.state_dict()["mask_token"], ckpt.state["mask_token"])

    # a fourm folder (save_pretrained, fourm's own config.json) with the run's keys: everything loads
    network.save_pretrained(tmp_path / "fourm")
    again, report = build_network(run_config(world, tmp_path, str(tmp_path / "fourm")), keys, registry)
    assert report is not None and report.new == [] and report.dropped == [] and report.loaded == report.parameters
    for name, tensor in network.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_an_uncached_hub_id_offline_fails_before_any_compute(
    world: dict[str, Path], registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = run_config(world, tmp_path / "run", "EPFL-VILAB/4M-21_B")
    with pytest.raises(UserError, match="EPFL-VILAB/4M-21_B"):
        build_network(config, run_keys(world, registry, tmp_path), registry)
    assert not (tmp_path / "run").exists()


def test_fourm_train_prints_the_summary_and_refuses_another_trunk(
    world: dict[str, Path],
    official: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fourm_core.apps.cli.main import main

    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    path = tmp_path / "finetune.yaml"
    config = run_config(world, tmp_path / "run", str(official))
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))  # no size: adopted
    assert main(["train", "--config", str(path), "--set", "schedule.steps=1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"init from {official}:" in out and "tensors loaded" in out
    assert f"new keys (fresh embeddings and heads): {NEW}" in out
    assert f"dropped keys (in the checkpoint, not in this run): {DROPPED}" in out
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    # a run that names another width: exit 2, one line naming the field, nothing trained
    other = tmp_path / "other"
    wider = ["--set", "model.overrides={dim: 64}", "--set", f"out_dir={other}"]
    assert main(["train", "--config", str(path), *wider]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model.init") and "dim 64 (run) vs 32 (checkpoint)" in err[-1]
    assert not other.exists()  # refused before anything was written


ML4M_4M21 = Path(__file__).parent / "fixtures" / "ml4m" / "model" / "swiglu_nobias"


@pytest.mark.skipif(not (ML4M_4M21 / "layout.json").is_file(), reason="no ml-4m model fixture")
def test_the_4m21_layout_written_by_ml4m_warm_starts_a_run(
    world: dict[str, Path], registry: Registry, tmp_path: Path
) -> None:
    """ml-4m's own ``FM`` state dict (the 4M-21 key set at a tiny width, regenerated from its fixture): the trunk
    loads whole, the run's keys match across the resolution, tables sized for the 30k official vocabulary are
    re-initialised with the reason, and the 4M-21 keys this run lacks are dropped."""
    from test_official_model import write_hub_layout

    repo = write_hub_layout(ML4M_4M21, tmp_path / "4M-21", registry)
    keys = run_keys(world, registry, tmp_path)
    network, report = build_network(run_config(world, tmp_path / "run", str(repo)), keys, registry)
    assert report is not None and report.new == []
    official = json.loads((repo / "config.json").read_text())
    assert network.config.dim == official["dim"] and network.config.encoder_depth == official["encoder_depth"]
    assert report.renamed == {v: k for k, v in AT_224.items()}
    assert set(report.dropped) == set(official["domains_in"]) - {"caption", "det", *AT_224.values()}
    # the world's vocabularies are smaller than 4M-21's (30k text, 8k depth) and its 8 px patches another projection:
    # every table is re-initialised with the reason, the modality embeddings and the trunk load
    ends = ("token_emb.weight", "to_logits.weight", ".proj.weight")
    tables = {n for n in network.state_dict() if n.endswith(ends) and n.startswith(("encoder_emb", "decoder_emb"))}
    assert set(report.reinitialised) == tables
    why = report.reinitialised["encoder_embeddings.rgb@64.proj.weight"]
    assert why == "shape (32, 768) in the checkpoint, (32, 192) in the run"
    assert "encoder_embeddings.caption.mod_emb" not in report.reinitialised
    state = json.loads((ML4M_4M21 / "layout.json").read_text())
    trunk = [n for n in state if not n.startswith(("encoder_embeddings", "decoder_embeddings"))]
    theirs = read_init(str(repo)).state
    ours = network.state_dict()
    for name in trunk:
        assert torch.equal(ours[name], theirs[name]), name


@pytest.mark.skipif(not (ML4M_4M21 / "layout.json").is_file(), reason="no ml-4m model fixture")
def test_4m7_to_4m21_as_the_paper_does(registry: Registry) -> None:
    """A 4M-7 state dict (ml-4m's names, the 4M-21 fixture cut to 4M-7's eight keys) starts a 4M-21 network: every
    4M-7 tensor loads (same vocabularies and grids; sin-cos tables rebuilt), the eleven other keys start fresh."""
    from test_official_model import rebuild_state

    from fourm_core.model import official_config

    four_m7 = {"rgb@224", "tok_rgb@224", "tok_normal@224", "tok_depth@224", "tok_semseg@224", "tok_clip@224"}
    four_m7 |= {"caption", "det"}
    state = {
        n: t
        for n, t in rebuild_state(ML4M_4M21, registry).items()
        if not n.startswith(("encoder_embeddings", "decoder_embeddings")) or n.split(".")[1] in four_m7
    }
    config = json.loads((ML4M_4M21 / "config.json").read_text())
    torch.manual_seed(0)
    network = FourMNetwork(official_config(config, registry))
    report = warm_start(network, InitCheckpoint("4M-7", ML4M_4M21, "official", config, state))
    assert report.reinitialised == {} and report.dropped == [] and report.renamed == {}
    assert set(report.shared) == four_m7
    assert set(report.new) == set(config["domains_in"]) - four_m7
    ours = network.state_dict()
    for name, tensor in state.items():
        if not name.endswith(".pos_emb"):
            assert torch.equal(ours[name], tensor), name
