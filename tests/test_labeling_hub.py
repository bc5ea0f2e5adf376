"""Hub teachers through the core: declaring one (``fp.HubModel``, ``fp.teacher_labeler``), planning with it (cached,
downloadable, random-init allowed, missing), and running it (``fp.HubTeacher``) on a photo store through the real
runner and CLI.

The teacher is a tiny random-initialised ``transformers`` Dinov2Model (2 layers, width 32) saved in the Hugging Face
cache layout under a temporary folder, found with ``HF_HUB_CACHE`` there and ``HF_HUB_OFFLINE=1``: exactly the path a
real hub id takes. The toy plugin is a real (dist-info) distribution made by the ``make_dist`` fixture, so ``fourm
data ingest`` and ``fourm data label`` see it as they would an installed plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fourm_core import plugin as fp  # noqa: E402
from fourm_core.apps.cli.main import main  # noqa: E402
from fourm_core.labeling.api import LabelContext, LabelError, SampleView  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.spec import Requirement  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from fourm_core.testing.official_hub import add_snapshot  # noqa: E402
from helpers import EXAMPLE_PLUGIN  # noqa: E402

REPO = "acme/tiny-dinov2"
MODEL = fp.HubModel(model_id=REPO, library="transformers", files=("config.json", "model.safetensors"))
#: the teacher's config: patch 8 at 64 px gives the tiny preset's 8x8 grid
CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 8,
    "image_size": 64,
}

#: A plugin with one modality labelled by a hub teacher: DINOv2's patch tokens and CLS, ImageNet-normalised input.
#: A blank (constant) image is refused by ``infer`` with a LabelError for the whole batch: the base must narrow it
#: down to that sample.
PLUGIN = f'''
import numpy as np
from fourm_core import plugin as fp

CONFIG = {CONFIG!r}
MODEL = fp.HubModel(model_id="{REPO}", library="transformers", files=("config.json", "model.safetensors"))
CALLS = []


class ToyTeacher(fp.HubTeacher):
    version = "1"

    def __init__(self, spec, context, model, batch_size=2):
        self.grid = spec.layout(context.preset).grid
        super().__init__(spec, context, model, resolution=self.grid * 8, batch_size=batch_size)

    def build(self, path):
        from transformers import Dinov2Config, Dinov2Model

        if path is None:
            return Dinov2Model(Dinov2Config(**CONFIG))
        return Dinov2Model.from_pretrained(path, use_safetensors=True)

    def infer(self, batch, samples):
        CALLS.append([s.index for s in samples])
        flat = batch.flatten(1).float()
        if bool(((flat.max(1).values - flat.min(1).values) < 1e-6).any()):
            raise LabelError("a blank image in the batch")
        x = self.normalise(batch, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        tokens = self.network(pixel_values=x).last_hidden_state
        g = self.grid
        feats = self.to_numpy(tokens[:, 1:].reshape(len(samples), g, g, -1), np.float16)
        cls = self.to_numpy(tokens[:, 0], np.float32)
        return [{{"features": feats[k], "cls": cls[k]}} for k in range(len(samples))]

    def dims(self):
        return {{"h": self.grid, "w": self.grid, "C": CONFIG["hidden_size"]}}

    def extra_provenance(self):
        return {{"layer": "last_hidden_state", "normalisation": "imagenet"}}


LabelError = fp.LabelError


def build(spec, context, model, batch_size=2):
    return ToyTeacher(spec, context, model, batch_size=batch_size)


TOY = fp.image_token_modality(
    "toyfeat",
    "tok_toyfeat",
    fp.TokenizerConfig(
        family="vit_vqvae", loss="smooth_l1", input_channels=CONFIG["hidden_size"], transform="features"
    ),
    vocab=(1024, 256),
    paper_patch=14,
    depends_on=("rgb",),
    arrays=(
        fp.ArraySpec(name="features", dtype="float16", shape=("h", "w", "C"), description="patch tokens"),
        fp.ArraySpec(name="cls", dtype="float32", shape=("C",), description="CLS token"),
    ),
    labelers=(
        fp.teacher_labeler(
            "fourm_toyteach_plugin:build",
            MODEL,
            default=True,
            requires=("modality:rgb",),
            options={{"batch_size": 2}},
            description="tiny DINOv2 patch tokens",
        ),
    ),
    description="a toy teacher's feature map",
)

fourm_register_modalities = fp.declare(TOY)
'''


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub cache holding REPO: the tiny Dinov2Model's config.json and model.safetensors, at commit 0...01."""
    from transformers import Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    saved = root / "saved"
    Dinov2Model(Dinov2Config(**CONFIG)).save_pretrained(saved, safe_serialization=True)
    add_snapshot(root / "cache", REPO, {name: (saved / name).read_bytes() for name in MODEL.files})
    return root / "cache"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, hub_cache: Path) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    return hub_cache


@pytest.fixture
def photo_store(make_dist, offline: Path, tmp_path: Path) -> Path:
    """The toy plugin installed, and a store ingested from 3 scikit-image photos and one blank picture."""
    from PIL import Image
    from skimage import data

    make_dist("fourm-toyteach", "toyteach", PLUGIN)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.png")
    Image.new("RGB", (80, 80), (128, 128, 128)).save(photos / "zz_blank.png")
    store = tmp_path / "photos.zarr"
    assert main(["data", "ingest", str(photos), "--out", str(store), "--image-size", "64", "--block-size", "2"]) == 0
    return store


def _plan(store: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["data", "label", str(store), "--plan", "--json", "--only", "rgb", "toyfeat", *extra]) == 0
    return {r["modality"]: r for r in json.loads(capsys.readouterr().out)}


# ------------------------------------------------------------------------------------------------------------------
# declaring
# ------------------------------------------------------------------------------------------------------------------


def test_a_teacher_labeler_requires_its_hub_model_and_passes_it_on() -> None:
    entry = fp.teacher_labeler("pkg.teachers:build", MODEL, description="d", requires=("modality:rgb",))
    assert [str(r) for r in entry.requires] == ["modality:rgb", f"hub:{REPO}", "package:torch", "package:transformers"]
    assert fp.HubModel.model_validate(entry.options["model"]) == MODEL and not entry.default
    with pytest.raises(ValueError, match="not a hub repo id"):
        fp.HubModel(model_id="not a repo", library="timm")
    with pytest.raises(ValueError, match="safetensors only"):
        fp.HubModel(model_id=REPO, library="timm", files=("pytorch_model.bin",))
    with pytest.raises(ValueError, match="not a hub repo id"):
        Requirement.parse("hub:nope")
    with pytest.raises(ValueError, match="option 'model'"):
        fp.teacher_labeler("pkg.teachers:build", MODEL, description="d", options={"model": "x"})


def test_status_cached_download_random_missing(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = fp.HubModel(model_id="acme/absent", library="transformers", revision="v2")
    assert fp.teacher_status(MODEL, {})[0] == "cached"
    folder = fp.load_hub_model(MODEL)
    assert folder.name == "0" * 39 + "1" and (folder / "model.safetensors").is_file()
    status, reason = fp.teacher_status(absent, {})
    assert status == "missing" and "acme/absent" in reason and "hf download acme/absent --revision v2" in reason
    assert "HF_HUB_OFFLINE" in reason
    with pytest.raises(fp.TeacherUnavailable, match="hf download acme/absent"):
        fp.load_hub_model(absent)
    assert fp.teacher_status(absent, {"allow_random_teachers": True})[0] == "random"
    assert fp.load_hub_model(absent, {"allow_random_teachers": True}) is None
    assert fp.teacher_status(MODEL, {"teacher_weights": "random"})[0] == "random"  # forced, even when cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # read at call time, not at import
    assert fp.teacher_status(absent, {})[0] == "download"
    status, reason = fp.teacher_status(absent, {"teacher_downloads": False})
    assert status == "missing" and "downloads are off" in reason
    with pytest.raises(Exception, match="dtype"):
        fp.teacher_options({"dtype": "int8"})
    assert fp.teacher_options({"dtype": "bfloat16"}).dtype == "bf16"


# ------------------------------------------------------------------------------------------------------------------
# running: batches, resizing, isolation, precision
# ------------------------------------------------------------------------------------------------------------------


def _toy(registry: Registry, **options):
    from fourm_toyteach_plugin import build

    spec = registry.get("toyfeat").spec
    ctx = LabelContext("tiny", 64, ("rgb",), options, {m.name: m.spec for m in registry.modalities()})
    return build(spec, ctx, MODEL.model_dump(mode="json"))


def test_batches_isolate_bad_samples_and_resize_once(make_dist, offline: Path) -> None:
    make_dist("fourm-toyteach", "toyteach", PLUGIN)
    import fourm_toyteach_plugin as plugin

    registry = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    teacher = _toy(registry, device="cpu")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(5)]
    images[3] = np.full((48, 48, 3), 7, np.uint8)  # blank: infer refuses the batch holding it
    views = [SampleView(i, {}, {"rgb": {"rgb": im}}) for i, im in enumerate(images)]
    views.insert(1, SampleView(9, {}, {"rgb": {"rgb": np.zeros((48, 48), np.float32)}}))  # not an image
    plugin.CALLS.clear()
    out = teacher.label_batch(views)
    assert isinstance(out[1], LabelError) and "uint8 HxWx3" in str(out[1])
    assert isinstance(out[4], LabelError) and "blank" in str(out[4])
    good = [o for i, o in enumerate(out) if i not in (1, 4)]
    assert all(o["features"].shape == (8, 8, 32) and o["features"].dtype == np.float16 for o in good)
    assert all(o["cls"].shape == (32,) and np.isfinite(o["cls"]).all() for o in good)
    # batches of 2 over the 5 good images; the batch with the blank one is retried sample by sample
    assert plugin.CALLS == [[0, 1], [2, 3], [2], [3], [4]]
    alone = teacher.label(views[0])
    np.testing.assert_allclose(alone["cls"], out[0]["cls"], rtol=1e-4, atol=1e-5)
    assert teacher.dims() == {"h": 8, "w": 8, "C": 32}
    # one resize per sample and size within a batch
    teacher._pixels.clear()
    first = teacher.images(views[:1], 64)
    assert teacher.images(views[:1], 64).data_ptr() != 0 and len(teacher._resized) == 1
    assert first.shape == (1, 3, 64, 64) and 0.0 <= float(first.min()) and float(first.max()) <= 1.0
    prov = teacher.provenance()
    assert prov["teacher"] == REPO and prov["commit"] == "0" * 39 + "1" and prov["revision"] == "main"
    assert prov["weights"] == "hub" and prov["resolution"] == 64 and prov["dtype"] == "fp32"
    assert prov["device"] == "cpu" and prov["layer"] == "last_hidden_state"
    # bf16 on the CPU runs under autocast; the values stay close to fp32's
    half = _toy(registry, device="cpu", dtype="bf16")
    (h,) = half.label_batch(views[:1])
    assert half.provenance()["dtype"] == "bf16" and not half.cast
    cos = float(h["cls"] @ out[0]["cls"] / np.linalg.norm(h["cls"]) / np.linalg.norm(out[0]["cls"]))
    assert cos > 0.98, cos


# ------------------------------------------------------------------------------------------------------------------
# the photo path through the CLI: plan, label, info
# ------------------------------------------------------------------------------------------------------------------


def test_photo_store_plan_label_and_provenance(photo_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(photo_store, capsys)
    assert plan["toyfeat"]["labeler"] == "teacher" and plan["toyfeat"]["model_id"] == REPO
    assert plan["toyfeat"]["weights"] == "cached" and plan["rgb"]["labeler"] == "source"
    assert "toyfeat/raw" not in AlignedStore.open(photo_store, mode="r").parts()  # --plan computes nothing
    assert main(["data", "label", str(photo_store), "--only", "rgb", "toyfeat", "--device", "cpu"]) == 0
    store = AlignedStore.open(photo_store, mode="r")
    state = store.info()["parts"]["toyfeat/raw"]
    assert (state["done"], state["failed"]) == (3, 1)  # the blank picture fails alone
    sample = store.read("toyfeat/raw", 0)
    assert sample["features"].shape == (8, 8, 32) and sample["features"].dtype == np.float16
    assert np.isfinite(sample["features"].astype(np.float32)).all()
    prov = store.provenance("toyfeat/raw")
    assert prov["teacher"] == REPO and prov["revision"] == "main" and prov["commit"] == "0" * 39 + "1"
    assert prov["resolution"] == 64 and prov["dtype"] == "fp32" and prov["weights"] == "hub"
    capsys.readouterr()
    assert main(["data", "info", str(photo_store), "--json"]) == 0
    records = {r["modality"]: r for r in json.loads(capsys.readouterr().out)["modalities"] if r["form"] == "raw"}
    assert records["toyfeat"]["random_init"] is False


def test_offline_empty_cache_skips_with_the_model_id_or_runs_random_when_allowed(
    photo_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    plan = _plan(photo_store, capsys)
    assert plan["toyfeat"]["labeler"] is None and plan["toyfeat"]["weights"] == "missing"
    assert plan["toyfeat"]["model_id"] == REPO and f"hf download {REPO}" in plan["toyfeat"]["skip_reason"]
    assert main(["data", "label", str(photo_store), "--only", "rgb", "toyfeat"]) == 0
    out = capsys.readouterr().out
    (skip,) = [line for line in out.splitlines() if line.startswith("skip toyfeat")]
    assert REPO in skip and "hf download" in skip and "Traceback" not in out
    assert AlignedStore.open(photo_store, mode="r").info()["parts"]["rgb/raw"]["done"] == 4  # the rest is labelled

    plan = _plan(photo_store, capsys, "--allow-random-teachers")
    assert plan["toyfeat"]["labeler"] == "teacher" and plan["toyfeat"]["weights"] == "random"
    assert main(["data", "label", str(photo_store), "--only", "toyfeat", "--allow-random-teachers"]) == 0
    prov = AlignedStore.open(photo_store, mode="r").provenance("toyfeat/raw")
    assert prov["weights"] == "random-init (seed 0)" and prov["weights_source"] == "random" and prov["commit"] is None
    capsys.readouterr()
    assert main(["data", "info", str(photo_store)]) == 0
    assert "random-init" in capsys.readouterr().out
    assert main(["data", "info", str(photo_store), "--json"]) == 0
    records = {r["modality"]: r for r in json.loads(capsys.readouterr().out)["modalities"] if r["form"] == "raw"}
    assert records["toyfeat"]["random_init"] is True and records["rgb"]["random_init"] is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line(photo_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["data", "label", str(photo_store), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device: cuda" in err and "GPU" in err and len(err.splitlines()) == 1
