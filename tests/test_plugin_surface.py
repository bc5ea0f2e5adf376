"""The plugin surface: ``fourm_core.plugin`` is the only core module plugins import, specs default what ``kind``
decides, a modality is one declaration, requirements are typed and checked, and the contract version is enforced."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import fourm_core.plugin as surface
from fourm_core.registry import CONTRACT_VERSION, Registry
from fourm_core.spec import Embedding, LabelerSpec, MaskingUnit, ModalitySpec, Requirement, RequirementKind, Vocabulary
from helpers import EXAMPLE_PLUGIN, registry_with

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = (ROOT / "modalities", ROOT / "plugins")
#: What plugin code may import from the core; plugin tests may also use the conformance kit.
ALLOWED = {"fourm_core.plugin"}
ALLOWED_IN_TESTS = ALLOWED | {"fourm_core.testing"}


def core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``fourm_core`` import in ``path``, wherever it sits (top level or in a function)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] if node.module != "fourm_core" else [f"fourm_core.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m == "fourm_core" or m.startswith("fourm_core.")]
    return found


def boundary_violations(path: Path) -> list[str]:
    allowed = ALLOWED_IN_TESTS if "tests" in path.parts else ALLOWED
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: imports {module}"
        for line, module in core_imports(path)
        if not any(module == a or module.startswith(a + ".") for a in allowed)
    ]


def test_plugins_import_nothing_from_the_core_but_the_plugin_surface() -> None:
    files = sorted(p for d in PLUGIN_DIRS for p in d.rglob("*.py"))
    assert len(files) > 60  # every plugin's code and tests are scanned
    hits = [v for f in files for v in boundary_violations(f)]
    assert not hits, "plugins must import only fourm_core.plugin:\n" + "\n".join(hits)


def test_the_boundary_scan_catches_deep_and_lazy_imports(tmp_path: Path) -> None:
    bad = tmp_path / "fourm_x" / "labelers.py"
    bad.parent.mkdir()
    bad.write_text(
        "from fourm_core.plugin import hookimpl\nfrom fourm_core.labeling.api import SampleView\n"
        "def f():\n    import fourm_core.viz.rendering\n    from fourm_core import registry\n"
    )
    assert [v.split(": ")[1] for v in boundary_violations(bad)] == [
        "imports fourm_core.labeling.api",
        "imports fourm_core.viz.rendering",
        "imports fourm_core.registry",
    ]
    test = tmp_path / "tests" / "test_x.py"
    test.parent.mkdir()
    test.write_text("from fourm_core.testing.checks import run_checks\nfrom fourm_core.spec import ModalitySpec\n")
    assert [v.split(": ")[1] for v in boundary_violations(test)] == ["imports fourm_core.spec"]


def test_the_surface_exports_everything_it_lists_without_torch() -> None:
    missing = [name for name in surface.__all__ if not hasattr(surface, name)]
    assert not missing
    assert surface.CONTRACT_VERSION == CONTRACT_VERSION and isinstance(CONTRACT_VERSION, int)
    code = "import sys, fourm_core.plugin; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_plugin_declares_the_current_contract() -> None:
    reg = Registry(disabled=set(), strict=False)
    assert len(reg.modalities()) == 22
    assert {m.plugin.contract for m in reg.modalities()} == {CONTRACT_VERSION}


# ------------------------------------------------------------------------------------------------------------------
# specs: what kind decides is defaulted, still validated when given
# ------------------------------------------------------------------------------------------------------------------


def _layouts(**extra: int) -> dict:
    return {"paper": {"max_tokens": 16, **extra}, "tiny": {"max_tokens": 8, **extra}}


@pytest.mark.parametrize(
    ("kind", "embedding", "vocabulary", "masking"),
    [
        ("global_tokens", Embedding.LEARNED, Vocabulary.OWN, MaskingUnit.TOKEN),
        ("sequence", Embedding.SINCOS_1D, Vocabulary.TEXT, MaskingUnit.SPAN),
    ],
)
def test_kind_decides_embedding_vocabulary_and_masking(kind, embedding, vocabulary, masking) -> None:
    extra = {"vocab_size": 64} if vocabulary == Vocabulary.OWN else {}
    spec = ModalitySpec(name="x", key="x", kind=kind, presets=_layouts(**extra))
    assert (spec.embedding, spec.vocabulary, spec.masking) == (embedding, vocabulary, masking)
    assert ModalitySpec.model_validate_json(spec.model_dump_json()) == spec


def test_an_explicit_value_that_contradicts_the_kind_is_rejected() -> None:
    with pytest.raises(ValidationError, match="needs embedding 1d"):
        ModalitySpec(name="x", key="x", kind="sequence", embedding="2d", presets=_layouts())
    with pytest.raises(ValidationError, match="masks by token"):
        ModalitySpec(name="x", key="x", kind="global_tokens", masking="span", presets=_layouts(vocab_size=64))
    chunked = ModalitySpec(
        name="x", key="x", kind="sequence", masking="chunk", chunk_tags=("v1=0",), presets=_layouts()
    )
    assert chunked.masking == MaskingUnit.CHUNK


# ------------------------------------------------------------------------------------------------------------------
# typed requirements
# ------------------------------------------------------------------------------------------------------------------


def test_requirements_parse_to_typed_records() -> None:
    lab = LabelerSpec(modality="x", name="y", factory="m:f", requires=("source:depth", "package:timm", "env:HOME"))
    assert [r.kind for r in lab.requires] == [RequirementKind.SOURCE, RequirementKind.PACKAGE, RequirementKind.ENV]
    assert [str(r) for r in lab.requires] == ["source:depth", "package:timm", "env:HOME"]
    assert Requirement.parse("modality:rgb") == Requirement(kind="modality", target="rgb")
    with pytest.raises(ValidationError, match="labeler 'y'.*unknown kind 'sourc'"):
        LabelerSpec(modality="x", name="y", factory="m:f", requires=("sourc:depth",))
    with pytest.raises(ValidationError, match="not 'kind:target'"):
        LabelerSpec(modality="x", name="y", factory="m:f", requires=("timm",))


LABELERS = """
@hookimpl
def fourm_register_labelers(register):
    from fourm_core.spec import LabelerSpec
    register(LabelerSpec(modality="depth", name="{name}", factory="fourm_core.labeling.common:copy_source",
                         options={{"fields": {{"depth": "depth"}}}}, requires=({requires},)))
"""


def test_an_unknown_requirement_kind_is_a_problem_naming_plugin_and_labeler(make_dist) -> None:
    ep = make_dist("fourm-typo", "typo", LABELERS.format(name="dpt", requires='"sourc:depth"'), version="1.2.3")
    reg = registry_with(ep)
    (problem,) = reg.problems
    assert problem.kind == "requirement"
    assert "fourm-typo 1.2.3" in problem.message and "labeler 'dpt'" in problem.message and "'sourc'" in problem.message
    names = [lab.name for lab in reg.labelers("depth")]
    assert "dpt" not in names and names[0] == "source"  # the rest (the depth plugin's own labelers) keeps working


def test_a_valid_requirement_is_accepted_typed(make_dist) -> None:
    reg = registry_with(make_dist("fourm-dpt", "dpt", LABELERS.format(name="dpt", requires='"package:numpy"')))
    assert reg.problems == []
    (dpt,) = [lab for lab in reg.labelers("depth") if lab.name == "dpt"]
    assert dpt.requires == (Requirement(kind=RequirementKind.PACKAGE, target="numpy"),)


def test_a_modality_requirement_must_be_ordered_before(make_dist) -> None:
    ep = make_dist("fourm-late", "late", LABELERS.format(name="from_caption", requires='"modality:caption"'))
    reg = registry_with(ep)
    (problem,) = reg.problems
    assert problem.kind == "requirement" and "depth/from_caption" in problem.message
    assert "neither depends on nor uses" in problem.message
    names = [lab.name for lab in reg.labelers("depth")]
    assert "from_caption" not in names and names[0] == "source"


# ------------------------------------------------------------------------------------------------------------------
# contract version
# ------------------------------------------------------------------------------------------------------------------

OLD_PLUGIN = """
FOURM_CONTRACT = {version}

@hookimpl
def fourm_register_modalities(register):
    register(image_spec("thermal"))
"""


def test_a_plugin_for_another_contract_is_refused_and_the_rest_loads(make_dist) -> None:
    ep = make_dist("fourm-old", "old", OLD_PLUGIN.format(version=1), version="0.0.1")
    reg = registry_with(ep)
    (problem,) = reg.problems
    assert problem.kind == "contract" and "fourm-old 0.0.1" in problem.message and "contract 1" in problem.message
    assert "thermal" not in reg and len(reg.modalities()) == 21
    record = [p for p in reg.plugins() if p.name == "old"][0]
    assert not record.ok and record.contract == 1 and record.hooks == []


def test_a_plugin_for_the_current_contract_loads(make_dist) -> None:
    reg = registry_with(make_dist("fourm-new", "new", OLD_PLUGIN.format(version=CONTRACT_VERSION)))
    assert reg.problems == [] and reg.get("thermal").plugin.contract == CONTRACT_VERSION


def test_a_malformed_contract_is_refused(make_dist) -> None:
    reg = registry_with(make_dist("fourm-odd", "odd", OLD_PLUGIN.format(version='"2"')))
    assert [p.kind for p in reg.problems] == ["contract"] and "thermal" not in reg


# ------------------------------------------------------------------------------------------------------------------
# one declaration per modality
# ------------------------------------------------------------------------------------------------------------------

DECLARED = """
from fourm_core.plugin import DecoderEntry, ModalityDeclaration, source_labeler

@hookimpl
def fourm_register_modalities(register):
    register(ModalityDeclaration(
        spec=image_spec("thermal"),
        labelers=(source_labeler({"thermal": "thermal"}, description="exact"),),
        decoders=(DecoderEntry(factory="fourm_core.viz.rendering:RecordDecoder"),),
    ))
"""


def test_a_declaration_registers_spec_and_parts_in_one_call(make_dist) -> None:
    reg = registry_with(make_dist("fourm-thermal", "thermal", DECLARED))
    assert reg.problems == []
    (lab,) = reg.labelers("thermal")
    assert lab.modality == "thermal" and lab.default and [str(r) for r in lab.requires] == ["source:thermal"]
    assert [d.modality for d in reg.decoders("thermal")] == ["thermal"]


def test_declared_parts_conflict_like_hook_registered_ones(make_dist) -> None:
    clash = DECLARED + LABELERS.format(name="source", requires='"source:depth"').replace("depth", "thermal")
    reg = registry_with(make_dist("fourm-thermal", "thermal", clash))
    assert [p.kind for p in reg.problems] == ["conflict"] and "labeler thermal/source" in reg.problems[0].message


TEACHERS = """
from fourm_core import plugin as fp

FIRST = fp.HubModel(model_id="org/first-teacher", library="transformers")
SECOND = fp.HubModel(model_id="org/second-teacher", library="transformers")


def build(spec, context, **options):
    raise AssertionError("planning never builds a labeler")


def plan_check(context, *, model, **_):
    if model["model_id"] == FIRST.model_id:
        return "missing", f"{FIRST.model_id} gives 7-d features, preset {context.preset!r} stores 8-d", FIRST.model_id
    return fp.teacher_status(fp.HubModel.model_validate(model), context.options) + (model["model_id"],)


build.plan_check = plan_check


def stand_in(spec, context):
    raise AssertionError("planning never builds a labeler")


@hookimpl
def fourm_register_modalities(register):
    register(fp.ModalityDeclaration(
        spec=image_spec("thermal", storage=(fp.pixel_array("kelvin", "float16", "kelvin"),)),
        labelers=(
            fp.source_labeler({"kelvin": "thermal"}, description="exact"),
            fp.teacher_labeler(f"{__name__}:build", FIRST, name="first", description="the default teacher"),
            fp.teacher_labeler(f"{__name__}:build", SECOND, name="second", description="another teacher"),
            fp.labeler("stand_in", f"{__name__}:stand_in", explicit=True, requires=("source:rgb",), description="no"),
        ),
    ))
"""


def test_an_explicit_labeler_is_never_the_default() -> None:
    with pytest.raises(ValidationError, match="runs only when named"):
        LabelerSpec(modality="x", name="y", factory="m:f", default=True, explicit=True)
    entry = surface.labeler("y", "m:f", explicit=True, description="a stand-in")  # the builder's default=True yields
    assert entry.explicit and not entry.default
    teacher = surface.teacher_labeler("m:f", surface.HubModel(model_id="o/m", library="timm"), description="d")
    assert not teacher.explicit and not teacher.default


def test_the_plan_runs_plugin_plan_checks_names_the_first_teacher_and_named_only_labelers(
    make_dist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fourm_core.labeling.runner import plan_labeling
    from fourm_core.spec import ArraySpec
    from fourm_core.storage.store import AlignedStore

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    reg = registry_with(make_dist("fourm-thermal", "thermal", TEACHERS))
    assert reg.problems == []
    assert [lab.name for lab in reg.labelers("thermal")] == ["source", "first", "second", "stand_in"]
    store = AlignedStore.create(tmp_path / "photos.zarr", n_samples=2, image_size=16, preset="tiny")
    store.ensure("source", (ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),))
    store.root.attrs["source"] = {"name": "photos", "fields": ["rgb"]}

    def plan(**kwargs):
        (thermal,) = plan_labeling(store, reg, only=["thermal"], **kwargs)
        return thermal

    # no weights: skipped, naming the first (default) teacher, never the last one tried; the stand-in is not tried
    skipped = plan()
    assert skipped.labeler is None and (skipped.model_id, skipped.weights) == ("org/first-teacher", "missing")
    assert "second: " in skipped.skip_reason and "stand_in: " not in skipped.skip_reason
    assert "run only when named: stand_in (--labeler thermal=NAME)" in skipped.skip_reason
    # random teachers allowed: the plugin's plan_check refuses the first (a plan skip with its reason, its id once)
    random = plan(options={"allow_random_teachers": True})
    assert (random.labeler, random.model_id, random.weights) == ("second", "org/second-teacher", "random")
    only_first = plan(options={"allow_random_teachers": True}, choices={"thermal": "first"})
    assert only_first.labeler is None and (only_first.model_id, only_first.weights) == ("org/first-teacher", "random")
    assert "7-d features, preset 'tiny' stores 8-d" in only_first.skip_reason
    # naming the explicit labeler picks it when its requirements hold
    named = plan(choices={"thermal": "stand_in"})
    assert (named.labeler, named.model_id, named.skip_reason) == ("stand_in", None, None)


def test_the_depth_plugin_is_one_declaration() -> None:
    reg = Registry(disabled={EXAMPLE_PLUGIN}, strict=True)
    depth = reg.get("depth")
    assert depth.plugin.hooks == ["fourm_register_modalities"]
    lab = depth.labelers()[0]  # the default, tried first: the source copy (synthetic ground truth)
    assert lab.name == "source" and lab.default and [str(r) for r in lab.requires] == ["source:depth"]
    assert all(not other.default for other in depth.labelers()[1:])


# ------------------------------------------------------------------------------------------------------------------
# builders and the serializer-test helpers plugins share
# ------------------------------------------------------------------------------------------------------------------


def test_the_module_import_form_is_inside_the_boundary(tmp_path: Path) -> None:
    ok = tmp_path / "fourm_y" / "plugin.py"
    ok.parent.mkdir()
    ok.write_text("from fourm_core import plugin as fp\nfrom fourm_core import plugin\nimport fourm_core.plugin\n")
    assert boundary_violations(ok) == []


def test_image_token_modality_takes_the_tokenizer_channels_from_the_raw_array() -> None:
    tokenizer = surface.TokenizerConfig(family="divae", loss="mse", transform="color")
    arrays = (surface.pixel_array("thermal", "float16", "kelvin", channels=3),)
    declared = surface.image_token_modality(
        "thermal", "tok_thermal", tokenizer, vocab=(1024, 256), arrays=arrays, description="d"
    )
    spec = declared.spec
    assert spec.tokenizer is not None and spec.tokenizer.input_channels == 3
    assert [a.name for a in spec.storage] == ["thermal", "tokens"] and spec.storage[0].shape == ("H", "W", 3)
    assert spec.key_has_resolution and spec.layout("paper").vocab_size == 1024 and spec.layout("tiny").max_tokens == 64
    single = surface.image_token_modality(
        "heat",
        "tok_heat",
        tokenizer,
        vocab=(64, 32),
        arrays=(surface.pixel_array("heat", "float16", "k"),),
        description="d",
    )
    assert single.spec.tokenizer is not None and single.spec.tokenizer.input_channels == 1
    explicit = tokenizer.model_copy(update={"input_channels": 5})
    kept = surface.image_token_modality("warm", "tok_warm", explicit, vocab=(64, 32), arrays=arrays, description="d")
    assert kept.spec.tokenizer is not None and kept.spec.tokenizer.input_channels == 5


def test_sequence_modality_and_labeler_build_the_records_written_by_hand() -> None:
    own = surface.labeler("ocr", "pkg.labelers:ocr", requires=("modality:rgb",), description="words")
    assert own == surface.LabelerEntry(
        name="ocr", factory="pkg.labelers:ocr", default=True, requires=("modality:rgb",), description="words"
    )
    decoder = surface.DecoderEntry(factory="pkg.decoders:Words")
    words = surface.ArraySpec(name="words", dtype="json", ragged=True)
    declared = surface.sequence_modality(
        "ocr",
        "ocr",
        max_tokens=(64, 32),
        storage=(words,),
        labelers=(own,),
        serializer="pkg.s:S",
        decoder=decoder,
        description="d",
    )
    by_hand = surface.ModalityDeclaration(
        spec=surface.ModalitySpec(
            name="ocr",
            key="ocr",
            kind="sequence",
            presets={"paper": surface.PresetLayout(max_tokens=64), "tiny": surface.PresetLayout(max_tokens=32)},
            storage=(words,),
            description="d",
        ),
        labelers=(own,),
        serializer="pkg.s:S",
        decoders=(decoder,),
    )
    assert declared == by_hand


def test_serializer_helpers_pass_a_sound_codec_and_catch_a_wrong_one() -> None:
    from fourm_core.testing.serializers import assert_parse_error, assert_token_soup_is_safe, value_id

    class Values:
        modality = "vals"

        def serialize(self, value, rng=None):
            return " ".join(surface.value_token(0, v) for v in value)

        def parse(self, text):
            return surface.TokenCursor(self.modality, text).values(0, len(text.split()))

    assert value_id("v0=7") == 211 and value_id("v3=999") == 4203
    assert_parse_error(Values(), "v0=1 v1=2", 1)
    assert_token_soup_is_safe(Values(), ["v0=1", "v0=999", "v1=2", "x"], trials=50, max_tokens=4)
    with pytest.raises(AssertionError):
        assert_parse_error(Values(), "v0=1 v1=2", 0)  # the error is at token 1

    class Halving(Values):
        def parse(self, text):
            return [v // 2 for v in super().parse(text)]

    with pytest.raises(AssertionError):
        assert_token_soup_is_safe(Halving(), ["v0=8", "v0=6"], trials=20, max_tokens=3)
