"""Silent wrong results that are now errors or warnings (issue 14, item 6; the library and config half).

Each test is a probe that used to end in a wrong result without a word: a misspelt config key ignored or reported
as pydantic's multi-line dump, a store trained on without its image modalities, a micro-batch larger than the data,
a typo in ``FOURM_DISABLE_PLUGINS`` disabling nothing, ``FOURM_STRICT_PLUGINS=yes`` meaning "not strict", a swapped
index file answering with another collection's ids, ``.gif`` photos skipped, a caption losing its ``[EOS]`` to the
token budget, NaN inputs training into NaN losses. Each asserts that the bad thing is named.
"""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from fourm_core.data.pipeline import NonFiniteInputError, SampleBuilder, untokenised_modalities
from fourm_core.inference.retrieval import EmbeddingIndex, IndexMeta, RetrievalError, sidecar_path
from fourm_core.registry import PluginError, Registry
from fourm_core.registry.discovery import env_flag
from fourm_core.sources.image_folder import ImageFolder
from fourm_core.storage.store import AlignedStore
from fourm_core.training.config import ConfigError, RunConfig, load_run_config
from fourm_core.training.data import TrainingData
from fourm_core.vocab import TextVocabulary, build_text_vocabulary
from helpers import EXAMPLE_PLUGIN, small_world

PRESET = "tiny"


def _config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "out_dir": "run",
        "vocabulary": "vocab.json",
        "datasets": [{"name": "world", "store": "w.zarr"}],
        "model": {"size": "tiny", "preset": PRESET, "overrides": {"dim": 32}},
        "optim": {"lr": 1e-3},
        "schedule": {"steps": 2},
        "engine": {"micro_batch_size": 4},
    }
    data.update(changes)
    return data


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------------------------------- config keys


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"log_evry": 5}, "unknown key 'log_evry' in {path}: did you mean 'log_every'?"),
        ({"optim": {"lrr": 1e-3}}, "unknown key 'optim.lrr' in {path}: did you mean 'optim.lr'?"),
        (
            {"datasets": [{"name": "world", "stor": "w.zarr", "store": "w.zarr"}]},
            "unknown key 'datasets[0].stor' in {path}: did you mean 'datasets[0].store'?",
        ),
        (
            {"model": {"size": "tiny", "overrides": {"num_head": 2}}},
            "unknown key 'model.overrides.num_head' in {path}: did you mean 'model.overrides.num_heads'?",
        ),
    ],
)
def test_a_misspelt_config_key_is_one_line_with_the_nearest_name(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, _config(**change))
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    assert str(err.value) == message.format(path=path)


def test_model_overrides_take_only_network_fields() -> None:
    """``model.overrides`` was a free mapping: a misspelt field failed only when the network was built (after the
    stores were opened), and setting the key table, which the data decides, was silently ignored."""
    for bad in ("dimm", "keys"):
        with pytest.raises(ValueError, match=f"unknown key {bad!r}"):
            RunConfig.model_validate(_config(model={"overrides": {bad: 1}}))
    assert RunConfig.model_validate(_config()).model.overrides == {"dim": 32}


def test_set_overrides_and_other_problems_name_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, _config())
    with pytest.raises(ConfigError, match=r"^unknown key 'schedule.stepz' in --set: did you mean 'schedule.steps'\?$"):
        load_run_config(path, **{"schedule.stepz": 3})
    with pytest.raises(ConfigError) as err:
        load_run_config(path, **{"schedule.steps": 0})
    assert str(err.value) == f"{path}: schedule.steps: Input should be greater than 0 (got 0)"
    with pytest.raises(ConfigError, match="'out_dir' in .* is 'run', not a mapping"):
        load_run_config(path, **{"out_dir.x": 1})
    path.write_text("out_dir: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x.yaml: not valid YAML \(line 2\)"):
        load_run_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="a run config is a mapping"):
        load_run_config(path)


def test_fourm_train_ends_a_misspelt_key_in_one_line(tmp_path: Path, run_cli: Any, user_error: Any) -> None:
    path = _write(tmp_path, _config(optim={"lrr": 1e-3}))
    user_error(run_cli(["train", "--config", path]), f"unknown key 'optim.lrr' in {path}: did you mean 'optim.lr'?")


# ------------------------------------------------------------------------------------------ stores and batches


@pytest.fixture(scope="module")
def untokenised(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """8 scenes with rgb, depth and captions labelled; depth (an image-token modality) never pre-tokenised."""
    return small_world(tmp_path_factory.mktemp("untokenised"), registry, ["rgb", "depth", "caption"], scenes=8)


def _training_config(world: dict[str, Path], **dataset: Any) -> RunConfig:
    return RunConfig.model_validate(
        _config(
            out_dir=str(world["root"] / "run"),
            vocabulary=str(world["vocab"]),
            datasets=[{"name": "world", "store": str(world["store"]), **dataset}],
        )
    )


def test_training_on_an_untokenised_store_names_it_and_the_command(
    untokenised: dict[str, Path], registry: Registry
) -> None:
    """Before: depth was dropped without a word and the model trained on rgb and captions alone."""
    vocab = TextVocabulary.load(untokenised["vocab"])
    store = str(untokenised["store"])
    with pytest.raises(ValueError) as err:
        TrainingData(_training_config(untokenised), registry, vocab)
    message = str(err.value)
    assert store in message and "depth" in message and f"fourm data tokenize {store}" in message
    with pytest.raises(ValueError, match=f"the data of depth but not their tokens .* `fourm data tokenize {store}`"):
        TrainingData(_training_config(untokenised, modalities=["rgb", "depth"]), registry, vocab)
    parts = AlignedStore.open(store, mode="r").parts()
    assert untokenised_modalities(registry, parts) == ["depth", "tok_rgb"]  # tok_rgb reads rgb's pixels
    assert untokenised_modalities(registry, [*parts, "depth/tokens", "tok_rgb/tokens"]) == []


def test_a_micro_batch_larger_than_the_dataset_gives_both_numbers(
    untokenised: dict[str, Path], registry: Registry
) -> None:
    """Before: positions wrapped round the 6 samples and every batch held repeats."""
    vocab = TextVocabulary.load(untokenised["vocab"])
    config = _training_config(untokenised, modalities=["rgb", "caption"], val_samples=2)
    config = config.model_copy(update={"engine": config.engine.model_copy(update={"micro_batch_size": 16})})
    with pytest.raises(
        ValueError, match="micro_batch_size 16 is larger than the 6 training samples of dataset 'world'"
    ):
        TrainingData(config, registry, vocab)
    fits = config.model_copy(update={"engine": config.engine.model_copy(update={"micro_batch_size": 6})})
    assert TrainingData(fits, registry, vocab).sources[0].train == 6


# ----------------------------------------------------------------------------------------- plugin environment


def test_an_unknown_name_in_disable_plugins_is_a_config_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``colour_palette`` matched no plugin, so color_palette stayed loaded and nothing was said."""
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", f"{EXAMPLE_PLUGIN},colour_palette")
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", "0")
    reg = Registry()
    problems = [p for p in reg.problems if p.kind == "config"]
    assert len(problems) == 1, reg.problems
    assert "'colour_palette'" in problems[0].message and "did you mean 'color_palette'?" in problems[0].message
    assert "known plugins: " in problems[0].message and "caption" in problems[0].message
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    assert not [p for p in Registry().problems if p.kind == "config"]


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "YES", " True "])
def test_strict_plugins_accepts_every_way_of_saying_yes(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", value)
    assert env_flag("FOURM_STRICT_PLUGINS") is True
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", "no_such_plugin")
    with pytest.raises(PluginError, match="no_such_plugin"):  # strict: the config problem stops the load
        Registry()


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "OFF"])
def test_strict_plugins_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", value)
    assert env_flag("FOURM_STRICT_PLUGINS") is False


@pytest.mark.parametrize("value", ["ture", "2", "strict"])
def test_strict_plugins_refuses_anything_else(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", value)
    with pytest.raises(ValueError, match=f"FOURM_STRICT_PLUGINS={value!r} is not an on/off switch"):
        Registry()


def test_a_bad_strict_switch_ends_fourm_in_one_line_naming_it(run_cli: Any, user_error: Any) -> None:
    user_error(run_cli(["plugins"], env={"FOURM_STRICT_PLUGINS": "ture"}), "FOURM_STRICT_PLUGINS='ture'")


# ------------------------------------------------------------------------------------------- retrieval index


def test_a_swapped_index_file_with_the_same_size_is_refused(tmp_path: Path) -> None:
    """Before: only the vector count and width were compared, so another collection's index of the same size
    loaded and answered with its ids."""
    rng = np.random.default_rng(0)
    ids = np.arange(10)
    paths = []
    for name in ("a", "b"):
        index = EmbeddingIndex(8, IndexMeta(modality="m")).build(rng.normal(size=(10, 8)).astype(np.float32), ids)
        paths.append(index.save(tmp_path / name / "world.index"))
    assert len(EmbeddingIndex.load(paths[0])) == 10
    shutil.copyfile(paths[1], paths[0])  # b's vectors under a's sidecar: same count, same dim
    with pytest.raises(RetrievalError) as err:
        EmbeddingIndex.load(paths[0])
    assert str(paths[0]) in str(err.value) and str(sidecar_path(paths[0])) in str(err.value)


# ------------------------------------------------------------------------------------------------ photo folders


def test_gif_photos_are_ingested_as_their_first_frame(tmp_path: Path) -> None:
    """Before: ``.gif`` was not a candidate extension, so GIFs were left out of the store without a word."""
    frames = [Image.fromarray(np.full((20, 20, 3), v, np.uint8)) for v in (200, 10)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "still.png")
    folder = ImageFolder(tmp_path, image_size=8)
    assert folder.keys == ("anim", "still")
    record = folder[0]
    assert record.rgb.shape == (8, 8, 3) and np.allclose(record.rgb, 200, atol=2)  # the first frame, as RGB
    assert "first of 2 frames used" in record.notes


# ---------------------------------------------------------------------------------------------------- samples


@pytest.fixture(scope="module")
def builder(registry: Registry) -> SampleBuilder:
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(["a red bus on a wet street"] * 4, words)
    return SampleBuilder(registry, PRESET, vocab)


def test_a_caption_cut_to_its_budget_warns_once_with_counts(builder: SampleBuilder) -> None:
    """Before: the caption's ``[EOS]`` fell off with the tail and nothing said so."""
    budget = builder.table["caption"].max_tokens
    long = {"caption": {"text": " ".join(["bus"] * (budget + 5))}}
    with pytest.warns(
        UserWarning, match=f"caption: a sequence of {budget + 6} tokens .* cut to its budget of {budget}"
    ):
        ids = builder(long)["caption"]
    assert len(ids) == budget
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second cut is counted, not warned again
        builder(long, random.Random(0))
        assert len(builder({"caption": {"text": "a red bus"}})["caption"]) == 4  # short: untouched, with its EOS
    assert builder.truncated == {"caption": 2}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_a_stored_input_array_names_sample_modality_and_array(builder: SampleBuilder, bad: float) -> None:
    """Before: the NaN rows went into the batch and every loss they touched became NaN."""
    info = builder.table["t5_caption"]
    rows = np.zeros((3, int(info.feature_dim or 8)), np.float32)
    rows[1, 2] = bad
    with pytest.raises(NonFiniteInputError) as err:
        builder({"t5_caption": {"embedding": rows}}, where="w.zarr sample 12")
    assert str(err.value).startswith("w.zarr sample 12, modality 't5_caption', array 'embedding': 1 of ")
    rows[1, 2] = 0.5
    assert builder({"t5_caption": {"embedding": rows}})["t5_caption"].shape[0] == 3
