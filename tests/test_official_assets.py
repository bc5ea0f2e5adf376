"""Each plugin declares its official ml-4m assets; ``--tokenizers official`` and ``fourm tokenizer list --official``
resolve them; :class:`OfficialTokenizer` applies the declared normalisation both ways and keeps ml-4m's method names.

Hub access is tested against a hub cache in the hub's own layout, built here from the reduced ml-4m fixtures
(``tests/fixtures/ml4m/tokenizers``, made by ``tools/ml4m_fixtures/make_vqvae.py``), with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fourm_core.apps.cli.main import main
from fourm_core.hub import HubAssetError
from fourm_core.registry import Registry
from fourm_core.spec import ModalitySpec, Normalisation, OfficialAssets, OfficialAssetsError, grid_presets
from fourm_core.testing.deterministic import digest, tensor_values
from fourm_core.tokenizers import from_pretrained
from fourm_core.tokenizers.official import resolve as official_resolve
from fourm_core.tokenizers.official.adapter import OfficialTokenizer
from fourm_core.tokenizers.official.normalisation import NORMALISERS, RAW_FORMS, robust_depth_stats
from fourm_core.tokenizers.official.resolve import NoOfficialTokenizerError, official_rows
from helpers import EXAMPLE_PLUGIN

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ml4m" / "tokenizers"
REPO = "EPFL-VILAB/4M_tokenizers_"
TEXT = "text_tokenizer_4m_wordpiece_30k.json"
#: modality -> (tokenizer repo suffix or None, normalisation, tokens, resolution), from the reference's table 1.2
EXPECTED: dict[str, tuple[str | None, str, str, str]] = {
    "rgb": (None, "imagenet", "14x14", "224"),
    "tok_rgb": ("rgb_16k_224-448", "minus_one_one", "14x14", "224-448"),
    "depth": ("depth_8k_224-448", "robust_depth", "14x14", "224-448"),
    "normal": ("normal_8k_224-448", "normal_half", "14x14", "224-448"),
    "semseg": ("semseg_4k_224-448", "semseg_shift_one", "14x14", "224-448"),
    "clip": ("CLIP-B16_8k_224-448", "features", "14x14", "224-448"),
    "dinov2": ("DINOv2-B14_8k_224-448", "features", "16x16", "224-448"),
    "imagebind": ("ImageBind-H14_8k_224-448", "features", "16x16", "224-448"),
    "dinov2_global": ("DINOv2-B14-global_8k_16_224", "features", "16 per item", "224"),
    "imagebind_global": ("ImageBind-H14-global_8k_16_224", "features", "16 per item", "224"),
    "canny_edge": ("edge_8k_224-512", "minus_one_one", "14x14", "224-512"),
    "sam_edge": ("edge_8k_224-512", "minus_one_one", "14x14", "224-512"),
    "sam_instance": ("sam-instance_1k_64", "none", "16 per item", "64"),
    "human_poses": ("human-poses_1k_8", "none", "8 per item", "-"),
    "caption": (None, "none", "-", "-"),
    "det": (None, "none", "-", "-"),
    "metadata_image": (None, "none", "-", "-"),
    "metadata_semantic": (None, "none", "-", "-"),
    "metadata_geometric": (None, "none", "-", "-"),
    "color_palette": (None, "none", "-", "-"),
    "t5_caption": (None, "none", "-", "-"),
}
SEQUENCES = {"caption", "det", "metadata_image", "metadata_semantic", "metadata_geometric", "color_palette"}


@pytest.fixture(autouse=True)
def one_thread_and_fresh_modules() -> Any:
    torch.set_num_threads(1)
    official_resolve.clear_cache()
    yield
    official_resolve.clear_cache()


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, offline: nothing can be fetched."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def materialize(name: str, out: Path) -> Path:
    """A fixture's hub layout (regenerated weights, digests checked): ``config.json`` + ``model.safetensors``."""
    layout = json.loads((FIXTURES / name / "layout.json").read_text())
    state = {}
    for key, entry in layout.items():
        if "alias_of" in entry:  # a second name of a shared tensor: the hub's writer keeps one
            continue
        dtype = getattr(torch, entry["dtype"])
        if entry["sha256"] is None:
            state[key] = torch.tensor(entry["value"], dtype=dtype).reshape(entry["shape"])
            continue
        value = tensor_values(key, entry["shape"], 0, entry["scale"])
        assert digest(value) == entry["sha256"]
        state[key] = torch.from_numpy(value).to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text((FIXTURES / name / "config.json").read_text())
    return out


def cache_repo(cache: Path, repo_id: str, folder: Path) -> Path:
    """Put ``folder``'s files into ``cache`` as the hub's snapshot of ``repo_id`` at ``main``."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    return snapshot


def needs_fixture(name: str) -> None:
    if not (FIXTURES / name / "layout.json").is_file():
        pytest.skip(f"no ml-4m fixture {name}")


@pytest.fixture(scope="module")
def builtins() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


# ---------------------------------------------------------------------------------------------------------------------
# declarations
# ---------------------------------------------------------------------------------------------------------------------


def test_every_plugin_with_an_official_counterpart_declares_it(builtins: Registry) -> None:
    declared = {m.name: m.spec.official for m in builtins.modalities()}
    assert set(declared) == set(EXPECTED)
    for name, (repo, normalisation, tokens, resolution) in EXPECTED.items():
        official = declared[name]
        assert official is not None, name
        assert official.hub_id == (REPO + repo if repo else None), name
        assert official.normalisation == Normalisation(normalisation), name
        assert (official.layout_text, official.resolution_text) == (tokens, resolution), name
        assert (official.text_tokenizer == TEXT) == (name in SEQUENCES | {"sam_instance", "human_poses"}), name
    assert {declared[n].teacher_input for n in ("clip", "dinov2", "imagebind")} == {Normalisation.IMAGENET}
    assert "T5-XXL" in (declared["t5_caption"].encoder or "")


def test_the_example_plugin_has_no_official_counterpart() -> None:
    registry = Registry(strict=False)
    assert EXAMPLE_PLUGIN in registry and registry.get(EXAMPLE_PLUGIN).spec.official is None
    with pytest.raises(NoOfficialTokenizerError, match=f"modality '{EXAMPLE_PLUGIN}'.*declares no official"):
        registry.tokenizer(EXAMPLE_PLUGIN, "paper", "official")


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"hub_id": "EPFL VILAB/rgb tokens", "normalisation": "none"}, "hub_id", "not a hub repo id"),
        ({"normalisation": "imagnet"}, "normalisation", "did you mean 'imagenet'"),
        ({"normalisation": "none", "resolution": "224-x"}, "resolution", "not a resolution"),
        ({"normalisation": "none", "text_tokenizer": "vocab.txt"}, "text_tokenizer", "JSON file name"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_field(fields: dict, field: str, words: str) -> None:
    with pytest.raises(OfficialAssetsError) as caught:
        OfficialAssets(**fields)
    message = str(caught.value)
    assert "\n" not in message and f"field {field!r}" in message and words in message


def test_a_bad_declaration_in_a_plugin_is_one_problem_line_naming_plugin_and_field(make_dist) -> None:
    ep = make_dist(
        "fourm-thermal",
        "thermal",
        """
        from fourm_core import plugin as fp

        @hookimpl
        def fourm_register_modalities(register):
            official = fp.OfficialAssets(hub_id="not a repo", normalisation="minus_one_one", grid=14)
            register(image_spec("thermal", official=official))
        """,
    )
    registry = Registry([ep], strict=False)
    (problem,) = [p for p in registry.problems if "thermal" in str(p)]
    assert "fourm-thermal 9.9.9" in str(problem) and "'hub_id'" in str(problem) and "\n" not in str(problem)


def test_a_declaration_that_contradicts_the_spec_names_the_modality() -> None:
    base = dict(name="thermal", key="tok_thermal", key_has_resolution=True, kind="image_tokens")
    assets = {"hub_id": REPO + "thermal_8k_224", "normalisation": "minus_one_one", "grid": 16, "resolution": 224}
    with pytest.raises(ValueError, match=r"modality 'thermal'.*official: grid 16 != the paper preset's 14x14"):
        ModalitySpec(**base, presets=grid_presets(1024, 256), official=OfficialAssets(**assets))
    with pytest.raises(ValueError, match=r"official assets of 'thermal': field 'normalisation'"):
        ModalitySpec(**base, presets=grid_presets(1024, 256), official={**assets, "normalisation": "rgb"})
    spec = ModalitySpec(**base, presets=grid_presets(1024, 256), official={**assets, "grid": 14})
    assert ModalitySpec.model_validate(json.loads(spec.model_dump_json())) == spec


# ---------------------------------------------------------------------------------------------------------------------
# the listing, and resolution through the registry
# ---------------------------------------------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_tokenizer_list_official_prints_the_12_tokenizer_repos(
    capsys: pytest.CaptureFixture[str], offline_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    monkeypatch.setenv("COLUMNS", "250")
    code, out = run(capsys, "tokenizer", "list", "--official", "--json")
    rows = json.loads(out)
    repos = {r["hub_id"] for r in rows if r["hub_id"]}
    assert code == 0 and len(repos) == 12 and {REPO + e[0] for e in EXPECTED.values() if e[0]} == repos
    assert all(r["cached"] == "no" for r in rows if r["hub_id"])
    code, out = run(capsys, "tokenizer", "list", "--official")
    assert code == 0 and "12 tokenizer repos, 0 in the local hub cache" in out
    assert all(repo in out for repo in repos) and "tok_canny_edge@224" in out and "robust_depth" in out


def test_tokenizers_official_for_a_modality_without_one_names_it(builtins: Registry) -> None:
    for name, words in (("caption", "text in the shared vocabulary"), ("rgb", "as it is"), ("t5_caption", "T5")):
        with pytest.raises(NoOfficialTokenizerError, match=f"modality '{name}' has no official tokenizer.*{words}"):
            builtins.tokenizer(name, "paper", "official")


def test_offline_and_uncached_fails_naming_the_repo(builtins: Registry, offline_cache: Path) -> None:
    with pytest.raises(HubAssetError) as caught:
        builtins.tokenizer("depth", "paper", "official")
    message = str(caught.value)
    assert "\n" not in message and f"{REPO}depth_8k_224-448" in message and "hf download" in message


def test_registry_resolves_a_cached_official_tokenizer_offline(
    tmp_path: Path, offline_cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "human-poses_1k_8"
    needs_fixture(name)
    cache_repo(offline_cache, REPO + name, materialize(name, tmp_path / name))
    registry = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    tok = registry.tokenizer("human_poses", "paper", "official")
    assert isinstance(tok, OfficialTokenizer) and tok is registry.tokenizer("human_poses", "tiny", "official")
    assert tok.trained and (tok.n_tokens, tok.vocab_size) == (8, 1024)
    ref = load_file(str(FIXTURES / name / "reference.safetensors"))
    poses = [row.reshape(-1).numpy() for row in ref["input"]]  # the stored 207-d body poses, used as they are
    assert torch.equal(tok.encode_raw(poses), ref["tokens"].reshape(len(poses), -1))
    decoded = tok.decode_raw(ref["tokens"].reshape(len(poses), -1))
    np.testing.assert_allclose(np.stack(decoded), ref["decoded"].reshape(len(poses), -1).numpy(), atol=1e-5)
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    rows = {r["modality"]: r for r in official_rows(registry)}
    assert rows["human_poses"]["cached"] == "yes" and rows["depth"]["cached"] == "no"


def test_modalities_sharing_a_repo_share_one_module(tmp_path: Path, offline_cache: Path) -> None:
    name = "sam-instance_1k_64"  # any small tokenizer stands in for the edge repo: this is about caching only
    needs_fixture(name)
    cache_repo(offline_cache, REPO + "edge_8k_224-512", materialize(name, tmp_path / name))
    registry = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    canny = registry.tokenizer("canny_edge", "paper", "official")
    sam = registry.tokenizer("sam_edge", "paper", "official")
    assert canny is not sam and canny.module is sam.module and canny.name == sam.name == "edge"


# ---------------------------------------------------------------------------------------------------------------------
# from_pretrained and the fixtures: ml-4m's tokens through both faces
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) if FIXTURES.is_dir() else [])
def test_from_pretrained_on_a_fixture_tokenizes_as_ml4m(tmp_path: Path, name: str) -> None:
    needs_fixture(name)
    if "beta_schedule" in (FIXTURES / name / "config.json").read_text():
        pytest.importorskip("fourm_core.tokenizers.official.divae")
    ref = load_file(str(FIXTURES / name / "reference.safetensors"))
    if "input" not in ref:
        pytest.skip(f"{name}: the reference has no tokenizer input")
    tok = from_pretrained(materialize(name, tmp_path / name))
    assert isinstance(tok, OfficialTokenizer)
    with torch.no_grad():
        assert torch.equal(tok.tokenize(ref["input"]), ref["tokens"])
        assert torch.equal(tok.encode(ref["input"])[2], ref["tokens"])


@pytest.mark.parametrize(
    ("name", "modality"),
    [("semseg_4k_224-448", "semseg"), ("sam-instance_1k_64", "sam_instance"), ("DINOv2-B14_8k_224-448", "dinov2")],
)
def test_stored_arrays_reach_the_tokenizer_through_the_declared_normalisation(
    tmp_path: Path, name: str, modality: str
) -> None:
    needs_fixture(name)
    ref = load_file(str(FIXTURES / name / "reference.safetensors"))
    tok = from_pretrained(materialize(name, tmp_path / name), modality=modality)
    x = ref["input"]
    if modality == "semseg":  # stored as class + 1 (0 = unlabelled): ml-4m's shifted ids, given to the tokenizer
        raws = [row.numpy().astype(np.int16) for row in x]
    elif modality == "sam_instance":  # 0/1 masks, as stored
        raws = [row[0].numpy().astype(np.uint8) for row in x]
    else:  # features as the teacher emits them, stored (h, w, C) float16
        raws = [row.permute(1, 2, 0).numpy().astype(np.float16) for row in x]
        x = torch.stack([torch.from_numpy(r.astype(np.float32)).permute(2, 0, 1) for r in raws])
        ref["tokens"] = tok.tokenize(x)
    assert torch.equal(tok.encode_raw(raws), ref["tokens"].reshape(len(raws), -1))
    decoded = tok.decode_raw(ref["tokens"])
    if modality == "semseg":
        assert all(np.array_equal(d, r.argmax(0).numpy()) for d, r in zip(decoded, ref["decoded"], strict=True))
    elif modality == "sam_instance":
        want = (torch.sigmoid(ref["decoded"][:, 0]) > 0.5).numpy().astype(np.uint8)
        assert np.array_equal(np.stack(decoded), want)


@pytest.mark.parametrize(("name", "modality"), [("edge_8k_224-512", "canny_edge"), ("rgb_16k_224-448", "tok_rgb")])
def test_a_diffusion_tokenizer_decodes_as_ml4m_for_the_same_generator_seed(
    tmp_path: Path, name: str, modality: str
) -> None:
    needs_fixture(name)
    pytest.importorskip("fourm_core.tokenizers.official.divae")
    ref = load_file(str(FIXTURES / name / "reference.safetensors"))
    tok = from_pretrained(materialize(name, tmp_path / name), modality=modality)
    assert tok.config.diffusion and tok.config.normalisation == Normalisation.MINUS_ONE_ONE
    with torch.no_grad():
        assert torch.equal(tok.tokenize(ref["input"]), ref["tokens"])
        decoded, _ = tok(input_clean=ref["input"], input_noised=ref["input_noised"], timesteps=ref["timesteps"])
        torch.testing.assert_close(decoded, ref["forward"], atol=1e-4, rtol=0)
        g = torch.Generator().manual_seed(0)  # ml-4m's keywords, unchanged
        size = tuple(ref["input"].shape[-2:])
        ours = tok.decode_tokens(ref["tokens"], timesteps=2, generator=g, image_size=size, verbose=False)
        torch.testing.assert_close(ours, ref["decode_ddpm2"], atol=1e-4, rtol=0)
    # fourm's words: steps and seed, the image size from the grid; stored form from the [-1, 1] output
    stored = tok.decode_raw(ref["tokens"], steps=2, seed=0)
    natural = ref["decode_ddpm2"] * 0.5 + 0.5
    if modality == "canny_edge":
        want = [(n.mean(0).numpy() > 0.5).astype(np.uint8) * 255 for n in natural]
    else:
        want = [
            np.clip(np.rint(n.clamp(0, 1).permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8) for n in natural
        ]
    for got, expected in zip(stored, want, strict=True):
        assert got.shape == expected.shape and np.mean(got != expected) < 0.01


def test_from_pretrained_on_a_fourm_tokenizer_gives_fourms_own(tmp_path: Path, builtins: Registry) -> None:
    from fourm_core.tokenizers import Tokenizer, build_tokenizer

    build_tokenizer(builtins.get("human_poses").spec, "tiny").save_pretrained(tmp_path / "pose")
    assert type(from_pretrained(tmp_path / "pose")) is Tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# normalisations, both ways
# ---------------------------------------------------------------------------------------------------------------------


def round_trip(form: str, normalisation: str, raw: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    norm, stored = NORMALISERS[Normalisation(normalisation)], RAW_FORMS[form]
    tokenizer_input = norm.forward(stored.to_natural(raw))
    return tokenizer_input, stored.from_natural(norm.inverse(tokenizer_input))


def test_rgb_uint8_to_minus_one_one_and_back_is_exact() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    x, back = round_trip("color", "minus_one_one", rgb)
    assert x.shape == (3, 24, 20) and float(x.min()) == -1.0 and float(x.max()) == 1.0
    torch.testing.assert_close(x[0, 3, 5], torch.tensor(rgb[3, 5, 0] / 127.5 - 1, dtype=torch.float32))
    assert back.dtype == np.uint8 and np.array_equal(back, rgb)


def test_imagenet_and_normal_half_match_ml4m_constants_and_invert() -> None:
    pixels = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    imagenet = NORMALISERS[Normalisation.IMAGENET]
    expected = (pixels[:, 1] - 0.456) / 0.224
    torch.testing.assert_close(imagenet.forward(pixels)[:, 1], expected)
    torch.testing.assert_close(imagenet.inverse(imagenet.forward(pixels)), pixels)
    normals = np.random.default_rng(1).normal(size=(6, 5, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    x, back = round_trip("unit_vectors", "normal_half", normals)
    torch.testing.assert_close(x, torch.from_numpy(normals).permute(2, 0, 1))  # (n + 1) / 2 at mean = std = 0.5
    np.testing.assert_allclose(back, normals, atol=1e-6)


def test_robust_depth_is_ml4m_truncated_standardisation_and_inverts_with_its_stats() -> None:
    depth = np.random.default_rng(2).uniform(0.5, 80.0, (16, 12)).astype(np.float32)
    depth[:2] = 0  # invalid pixels count, as in ml-4m
    flat = np.sort(depth.reshape(-1))
    n = flat.size
    band = flat[int(0.1 * n) : int(0.9 * n)].astype(np.float64)
    expected = (depth - band.mean()) / np.sqrt(band.var(ddof=1) + 1e-6)
    x, stored = round_trip("robust_depth", "robust_depth", depth)
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-5)  # tokens hold no scale: standardised back
    mean, std = robust_depth_stats(torch.from_numpy(depth))
    back = NORMALISERS[Normalisation.ROBUST_DEPTH].inverse(x, stats=(mean, std))
    np.testing.assert_allclose(back[0].numpy(), depth, rtol=1e-5, atol=1e-4)


def test_semseg_stored_form_is_ml4m_shifted_form() -> None:
    stored = np.array([[0, 1, 134], [5, 0, 2]], dtype=np.int16)  # 0 = unlabelled, class c stored as c + 1
    x, back = round_trip("classes", "semseg_shift_one", stored)
    assert torch.equal(x, torch.from_numpy(stored.astype(np.int64))) and np.array_equal(back, stored)
    natural = RAW_FORMS["classes"].to_natural(stored)
    assert int(natural[0, 0]) == 255 and int(natural[0, 1]) == 0  # ml-4m's ids before the shift (255 = unlabelled)


def test_edges_and_masks_round_trip() -> None:
    edges = (np.random.default_rng(3).random((8, 8)) > 0.7).astype(np.uint8) * 255
    x, back = round_trip("edges", "minus_one_one", edges)
    assert set(x.unique().tolist()) <= {-1.0, 1.0} and np.array_equal(back, edges)
    masks = (np.random.default_rng(4).random((8, 8)) > 0.5).astype(np.uint8)
    x, back = round_trip("masks", "none", masks)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and np.array_equal(back, masks)


# ---------------------------------------------------------------------------------------------------------------------
# the adapter over a stand-in module (its normalisation and ml-4m's diffusion keywords)
# ---------------------------------------------------------------------------------------------------------------------


class StandIn(torch.nn.Module):
    """Records what it is given; tokens are the rounded mean of each 4x4 patch's first channel, shifted to >= 0."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[Any] = []

    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return (torch.nn.functional.avg_pool2d(x[:, :1], 4)[:, 0] * 2 + 2).round().long()

    def decode_tokens(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.seen.append(kwargs)
        up = tokens.float().repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
        return ((up - 2) / 2).expand(-1, 3, -1, -1)


def test_adapter_feeds_edges_as_three_channel_minus_one_one_and_passes_diffusion_keywords() -> None:
    config = {"enc_type": "vit_b_enc", "dec_type": "unet_patched", "beta_schedule": "linear", "n_channels": 3}
    config |= {"image_size": 8, "patch_size": 4, "codebook_size": 8}
    module = StandIn()
    tok = OfficialTokenizer.from_hub_config(module, config, normalisation="minus_one_one", transform="edges")
    edges = np.zeros((8, 8), np.uint8)
    edges[:4, :4] = 255
    ids = tok.encode_raw([edges])
    given = module.seen[0]
    assert given.shape == (1, 3, 8, 8) and float(given.min()) == -1.0 and float(given.max()) == 1.0
    assert ids.tolist() == [[4, 0, 0, 0]] and tok.n_tokens == 4
    (back,) = tok.decode_raw(ids, steps=7, seed=3)
    assert np.array_equal(back, edges)
    kwargs = module.seen[-1]
    assert (
        kwargs["timesteps"] == 7 and kwargs["image_size"] == (8, 8) and isinstance(kwargs["generator"], torch.Generator)
    )
    tok.decode_tokens(ids.reshape(1, 2, 2), timesteps=2)
    assert module.seen[-1] == {"timesteps": 2}  # ml-4m's names pass through unchanged
