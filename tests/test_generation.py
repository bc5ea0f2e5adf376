"""Generation: schedules, MaskGIT / ROAR / cached autoregressive decoding, guidance, sampling, ensembling.

A tiny random-init FourMNetwork (dim 32, 1 encoder + 2 decoder blocks) over one key of every kind: the tests check
mechanics (shapes, coverage, exact equalities between paths), not sample quality.
"""

from __future__ import annotations

import time

import pytest
import torch

from fourm_core.data.collate import Collator
from fourm_core.data.masking import EOS_ID, SENTINEL_BASE_ID
from fourm_core.inference import (
    GenerationSampler,
    GenerationSchedule,
    ScheduleError,
    ensemble,
    filter_logits,
    load_schedule,
    tokens_per_step,
)
from fourm_core.model import FourMNetwork, fourm_config
from fourm_core.training.report import predict_tokens

INFO = {
    "px": {"type": "pixels", "pos": "2d", "max_tokens": 4, "image_size": 16, "patch_size": 8},
    "grid": {
        "type": "image_tokens",
        "pos": "2d",
        "max_tokens": 16,
        "image_size": 16,
        "patch_size": 4,
        "vocab_size": 32,
    },
    "glob": {"type": "global_tokens", "pos": "learned", "max_tokens": 4, "vocab_size": 16},
    "seq": {"type": "sequence", "pos": "1d", "max_tokens": 24, "vocab_size": 64},
}
for _i, (_key, _info) in enumerate(INFO.items()):
    _info.update(id=_i + 1, input=True, target=_info["type"] != "pixels")

S1 = SENTINEL_BASE_ID + 1


@pytest.fixture(scope="module")
def model() -> FourMNetwork:
    torch.manual_seed(0)
    return FourMNetwork(fourm_config(INFO, "tiny", dim=32, encoder_depth=1, decoder_depth=2, num_heads=2)).eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))


def step(target: str, scheme: str, **kw: object) -> dict:
    return {"target": target, "scheme": scheme, **kw}


# ---------------------------------------------------------------------------------------------- schemes


@pytest.mark.parametrize("scheme,steps", [("maskgit", 4), ("roar", 5), ("maskgit", 16), ("roar", 1)])
def test_parallel_schemes_fill_every_position_once(
    model: FourMNetwork, pixels: torch.Tensor, scheme: str, steps: int
) -> None:
    trace: list[dict] = []
    out = GenerationSampler(model).generate(
        {"px": pixels}, [step("grid", scheme, num_steps=steps)], seed=0, batch_size=3, trace=trace
    )
    ids = out["grid"]
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < 32
    fixed = torch.cat([t["fixed"] for t in trace if "fixed" in t], dim=1)  # (B, positions fixed over all steps)
    assert fixed.shape == (3, 16)
    assert all(sorted(row.tolist()) == list(range(16)) for row in fixed)  # each position exactly once
    sizes = [t["fixed"].shape[1] for t in trace if "fixed" in t]
    assert sizes == tokens_per_step(16, steps)  # both schemes follow the (default cosine) token schedule


def test_one_step_maskgit_at_temperature_zero_is_the_one_pass_argmax(model: FourMNetwork, pixels: torch.Tensor) -> None:
    for target in ("grid", "glob"):
        out = GenerationSampler(model).generate(
            {"px": pixels}, [step(target, "maskgit", temperature=0.0)], batch_size=2
        )
        probe = predict_tokens(model, Collator(INFO), [{"px": pixels}] * 2, ["px"], target)
        assert torch.equal(out[target], probe)


def test_logits_for_one_key_equal_that_key_of_all_logits(model: FourMNetwork, pixels: torch.Tensor) -> None:
    trace: list[dict] = []
    GenerationSampler(model).generate({"px": pixels}, [step("grid", "maskgit", num_steps=2)], trace=trace)
    mod_dict, n_enc = trace[0]["mod_dict"], trace[0]["num_encoder_tokens"]
    every = model(mod_dict, n_enc, 16, return_logits=True)
    only = model(mod_dict, n_enc, 16, return_logits=True, logits_for=("grid",))
    assert set(every) == {"grid", "glob", "seq"} and list(only) == ["grid"]
    assert torch.equal(only["grid"], every["grid"])


def test_token_schedules() -> None:
    for n, s in [(16, 1), (16, 4), (16, 16), (196, 12), (5, 3)]:
        for kind in ("cosine", "linear"):
            counts = tokens_per_step(n, s, kind)
            assert len(counts) == s and sum(counts) == n and min(counts) >= 1
    assert tokens_per_step(16, 4, "linear") == [4, 4, 4, 4]
    cosine = tokens_per_step(196, 12)
    assert cosine[0] < cosine[-1]  # few tokens first, when the model knows least


# ---------------------------------------------------------------------------------------------- autoregressive


def test_autoregressive_returns_eos_terminated_ids(model: FourMNetwork, pixels: torch.Tensor) -> None:
    ids = GenerationSampler(model).generate({"px": pixels}, [step("seq", "autoregressive")], seed=3, batch_size=4)[
        "seq"
    ]
    assert ids.shape == (4, 24) and int(ids.max()) < 64
    for row in ids.tolist():
        if EOS_ID in row:
            end = row.index(EOS_ID)
            assert all(t == 0 for t in row[end + 1 :])
            assert not any(SENTINEL_BASE_ID <= t < SENTINEL_BASE_ID + 200 for t in row[:end])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_kv_cache_equals_full_recomputation(model: FourMNetwork, pixels: torch.Tensor, temperature: float) -> None:
    sampler = GenerationSampler(model, stop_ids=())  # decode the full length
    schedule = [step("seq", "autoregressive", temperature=temperature)]
    times = {}
    out = {}
    for use_cache in (False, True):
        start = time.perf_counter()
        out[use_cache] = sampler.generate({"px": pixels}, schedule, seed=5, batch_size=3, use_cache=use_cache)["seq"]
        times[use_cache] = time.perf_counter() - start
    assert torch.equal(out[True], out[False])
    print(
        f"\n24 tokens x 3 samples, T={temperature}: full {times[False] * 1e3:.1f} ms, "
        f"cached {times[True] * 1e3:.1f} ms, x{times[False] / times[True]:.2f}"
    )


def test_cached_logits_match_the_training_forward(model: FourMNetwork, pixels: torch.Tensor) -> None:
    """Greedy tokens are the argmax of the teacher-forced logits of the ordinary forward over the same span."""
    ids = GenerationSampler(model, stop_ids=()).generate(
        {"px": pixels}, [step("seq", "autoregressive", temperature=0.0, max_tokens=10)]
    )["seq"][:, :10]
    sampler = GenerationSampler(model)
    state = {"px": sampler.input_entry("px", [pixels])}
    entry = sampler.empty_entry("seq", 1)
    entry["tensor"][0, 0] = S1
    entry["input_mask"][0, 0] = False
    span = torch.cat([torch.tensor([S1]), ids[0], torch.tensor([0])])  # [S_1] t1..t10, a last (ignored) target
    entry["tensor"][0, 1 : 1 + len(span)] = span
    entry["target_mask"][0, 1 : 1 + len(span)] = False
    entry["decoder_attention_mask"][0, 1 : 1 + len(span)] = 1
    mod_dict = sampler.model_batch(state, (), "seq", entry)
    with torch.no_grad():
        logits = model(mod_dict, 5, len(span) - 1, return_logits=True)["seq"]
    assert torch.equal(logits[0].argmax(-1)[:10], ids[0])


# ---------------------------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("target,scheme", [("grid", "maskgit"), ("seq", "autoregressive")])
def test_guidance_scale_one_is_unguided_and_zero_is_unconditional(
    model: FourMNetwork, pixels: torch.Tensor, target: str, scheme: str
) -> None:
    sampler = GenerationSampler(model)
    kw = {"num_steps": 3} if scheme == "maskgit" else {}

    def run(inputs: dict, scale: float) -> torch.Tensor:
        schedule = [step(target, scheme, temperature=1.0, cfg_scale=scale, **kw)]
        return sampler.generate(inputs, schedule, seed=11, batch_size=2)[target]

    plain = run({"px": pixels}, 1.0)
    assert torch.equal(plain, run({"px": pixels}, 1.0))
    assert torch.equal(run({"px": pixels}, 0.0), run({}, 1.0))  # the unconditional pass drops every condition
    guided = run({"px": pixels}, 3.0)
    assert guided.shape == plain.shape


def test_guidance_drops_only_the_listed_conditions(model: FourMNetwork, pixels: torch.Tensor) -> None:
    sampler = GenerationSampler(model)
    glob = torch.tensor([1, 2, 3, 4])
    schedule = [step("grid", "maskgit", num_steps=2, cfg_scale=0.0, cfg_conditions=["glob"])]
    kept = sampler.generate({"px": pixels, "glob": glob}, schedule, seed=2)["grid"]
    without = sampler.generate({"px": pixels}, [step("grid", "maskgit", num_steps=2)], seed=2)["grid"]
    assert torch.equal(kept, without)  # scale 0 with only `glob` dropped: conditioned on the pixels alone


@pytest.mark.parametrize("target,scheme", [("grid", "maskgit"), ("seq", "autoregressive")])
def test_one_weighted_condition_equals_single_guidance(
    model: FourMNetwork, pixels: torch.Tensor, target: str, scheme: str
) -> None:
    sampler = GenerationSampler(model)
    inputs = {"px": pixels, "glob": torch.tensor([1, 2, 3, 4])}
    kw = {"num_steps": 3} if scheme == "maskgit" else {"max_tokens": 10}
    single = [step(target, scheme, temperature=1.0, cfg_scale=2.5, cfg_conditions=["glob"], **kw)]
    multi = [step(target, scheme, temperature=1.0, cfg_weights={"glob": 2.5}, **kw)]
    a = sampler.generate(inputs, single, seed=5, batch_size=2)[target]
    assert torch.equal(a, sampler.generate(inputs, multi, seed=5, batch_size=2)[target])


def test_multi_condition_guidance_sums_weighted_differences(model: FourMNetwork, pixels: torch.Tensor) -> None:
    sampler = GenerationSampler(model)
    glob = torch.tensor([1, 2, 3, 4])
    # weights {px: 1, glob: 0}: uncond + 1 * (only px - uncond) + 0 * (only glob - uncond) = the px-only logits
    multi = [step("grid", "roar", num_steps=1, temperature=0.0, cfg_weights={"px": 1.0, "glob": 0.0})]
    only_px = sampler.generate({"px": pixels}, [step("grid", "roar", num_steps=1, temperature=0.0)], seed=1)
    assert torch.equal(sampler.generate({"px": pixels, "glob": glob}, multi, seed=1)["grid"], only_px["grid"])
    # weights {px: 0, glob: 0}: the unconditional logits
    zero = [step("grid", "roar", num_steps=1, temperature=0.0, cfg_weights={"px": 0.0, "glob": 0.0})]
    nothing = sampler.generate({}, [step("grid", "roar", num_steps=1, temperature=0.0)], seed=1, batch_size=1)
    assert torch.equal(sampler.generate({"px": pixels, "glob": glob}, zero, seed=1)["grid"], nothing["grid"])
    # three decoder passes per step: uncond, px only, glob only
    trace: list[dict] = []
    strong = [step("grid", "roar", num_steps=1, temperature=0.0, cfg_weights={"px": 2.0, "glob": 1.5})]
    sampler.generate({"px": pixels, "glob": glob}, strong, seed=1, trace=trace)
    guidance = GenerationSampler.guidance(load_schedule(strong), 0, {"px", "glob"})
    assert guidance.drops == [frozenset({"px", "glob"}), frozenset({"glob"}), frozenset({"px"})]
    logits = [torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 3.0]])]
    assert torch.allclose(guidance.combine(logits), torch.tensor([[2.0, 4.0]]))  # u + 2 (c1 - u) + 1.5 (c2 - u)


def test_guidance_grows_with_finished_targets(model: FourMNetwork, pixels: torch.Tensor) -> None:
    sampler = GenerationSampler(model)
    first = step("glob", "maskgit", num_steps=2, temperature=0.0)
    second = step("grid", "maskgit", num_steps=2, temperature=0.0, cfg_scale=0.0, cfg_conditions=["px"])
    grown = sampler.generate({"px": pixels}, GenerationSchedule.from_list([first, second], cfg_grow=True))
    plain = sampler.generate({"px": pixels}, [first, second])
    # without growth the unconditional pass keeps the generated `glob`; with it, nothing is left
    alone = [step("grid", "maskgit", num_steps=2, temperature=0.0)]
    assert torch.equal(plain["grid"], sampler.generate({"glob": plain["glob"][0]}, alone)["grid"])
    assert torch.equal(grown["grid"], sampler.generate({}, alone, batch_size=1)["grid"])
    # multi-condition steps gain the finished target as a condition of weight cfg_grow_weight
    chain = GenerationSchedule.from_list(
        [first, step("grid", "maskgit", cfg_weights={"px": 2.0})], cfg_grow=True, cfg_grow_weight=0.5
    )
    assert chain.guided_conditions(1, {"px", "glob"}) == (frozenset(), {"px": 2.0, "glob": 0.5})
    assert chain.guided_conditions(0, {"px"}) == (frozenset(), {})


# ---------------------------------------------------------------------------------------------- sampling


def test_top_k_one_is_greedy_and_seeds(model: FourMNetwork, pixels: torch.Tensor) -> None:
    sampler = GenerationSampler(model)

    def run(seed: int, roar: int = 4, **kw: object) -> dict[str, torch.Tensor]:
        schedule = [step("seq", "autoregressive", max_tokens=12, **kw), step("grid", "roar", num_steps=roar, **kw)]
        return sampler.generate({"px": pixels}, schedule, seed=seed, batch_size=2)

    # one ROAR step: no random order, so only the token draws differ between the two
    greedy = run(0, roar=1, temperature=0.0)
    assert all(torch.equal(greedy[k], run(7, roar=1, temperature=2.0, top_k=1)[k]) for k in greedy)
    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_filter_logits() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_k=0.5)).tolist() == [[False, False, True, True]]
    # probabilities 0.64, 0.24, 0.09, 0.03: the nucleus of 0.7 holds the first two tokens
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert not torch.isinf(filter_logits(logits, top_p=1.0)).any()


# ---------------------------------------------------------------------------------------------- chains


def test_chained_targets_see_earlier_generations(model: FourMNetwork, pixels: torch.Tensor) -> None:
    trace: list[dict] = []
    schedule = [
        step("seq", "autoregressive", max_tokens=8),
        step("glob", "maskgit", num_steps=2),
        step("grid", "roar", num_steps=2),
    ]
    out = GenerationSampler(model).generate({"px": pixels}, schedule, seed=4, batch_size=2, trace=trace)
    batches = {t["target"]: t["mod_dict"] for t in trace if "mod_dict" in t and t["step"] == 0}
    assert list(batches) == ["seq", "glob", "grid"]
    # the sequence step sees only the pixels (and its own `[S_1]` input)
    assert batches["seq"]["glob"]["input_mask"].all() and not batches["seq"]["px"]["input_mask"].any()
    # the global step sees the generated sequence as input
    seq = batches["glob"]["seq"]
    used = ~seq["input_mask"][:, :24]
    assert torch.equal(seq["tensor"][:, :24][used], out["seq"][used])
    assert used.any()
    # the grid step sees both earlier targets
    assert torch.equal(batches["grid"]["glob"]["tensor"], out["glob"])
    assert not batches["grid"]["glob"]["input_mask"].any()
    assert torch.equal(batches["grid"]["seq"]["tensor"], seq["tensor"])
    # within MaskGIT / ROAR, tokens fixed by the first step are inputs of the second
    second = next(t for t in trace if t["target"] == "grid" and t["step"] == 1 and "mod_dict" in t)["mod_dict"]
    assert int((~second["grid"]["input_mask"]).sum()) == 2 * tokens_per_step(16, 2)[0]


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "steps,inputs,message",
    [
        ([step("nope", "maskgit")], ["px"], "'nope'): unknown key"),
        ([step("px", "maskgit")], [], "'px'): input-only key"),
        ([step("grid", "autoregressive")], ["px"], "'grid'): autoregressive needs a sequence key"),
        ([step("seq", "maskgit")], ["px"], "'seq'): maskgit cannot decode a sequence key"),
        ([step("glob", "roar", num_steps=5)], ["px"], "'glob'): 5 steps for 4 tokens"),
        ([step("grid", "maskgit"), step("grid", "roar")], ["px"], "'grid'): already given"),
        ([step("grid", "maskgit")], ["grid"], "'grid'): already given"),
        ([step("grid", "maskgit", cfg_conditions=["glob"])], ["px"], "condition 'glob' is not an input"),
        ([step("grid", "maskgit")], ["typo"], "input 'typo': unknown key"),
        ([step("grid", "maskgit", cfg_weights={"px": 1.0, "seq": 2.0})], ["px"], "condition 'seq' is not an input"),
    ],
)
def test_schedule_errors_name_the_key_and_problem(steps: list, inputs: list, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GenerationSchedule.from_list(steps).validate_for(INFO, inputs)


def test_schedule_from_yaml_and_field_errors(tmp_path) -> None:  # noqa: ANN001
    text = "- {target: seq, scheme: autoregressive, top_p: 0.9}\n- {target: grid, scheme: maskgit, num_steps: 8}\n"
    (tmp_path / "s.yaml").write_text(text)
    for source in (text, tmp_path / "s.yaml", str(tmp_path / "s.yaml"), f"steps:\n{text}".replace("- ", "  - ")):
        schedule = load_schedule(source)
        assert schedule.targets == ["seq", "grid"] and schedule.steps[1].num_steps == 8
    with pytest.raises(ValueError, match="scheme"):
        load_schedule([step("grid", "diffusion")])
    with pytest.raises(ValueError, match="top_k"):
        load_schedule([step("grid", "maskgit", top_k=0)])
    with pytest.raises(ValueError, match="cfg_weights replaces"):
        load_schedule([step("grid", "maskgit", cfg_scale=2.0, cfg_weights={"px": 2.0})])
    grown = load_schedule("cfg_grow: true\ncfg_grow_weight: 2\nsteps:\n  - {target: grid, scheme: maskgit}\n")
    assert grown.cfg_grow and grown.cfg_grow_weight == 2.0


def test_invalid_schedule_fails_before_compute(pixels: torch.Tensor) -> None:
    class Boom(FourMNetwork):
        def forward(self, *a: object, **k: object) -> None:  # pragma: no cover - must not run
            raise AssertionError("computed")

    boom = Boom(fourm_config(INFO, "tiny", dim=32, encoder_depth=1, decoder_depth=1, num_heads=2))
    with pytest.raises(ScheduleError, match="'glob'"):
        GenerationSampler(boom).generate(
            {"px": pixels}, [step("grid", "maskgit"), step("glob", "maskgit", num_steps=9)]
        )


# ---------------------------------------------------------------------------------------------- ensemble


def test_ensemble_majority_vote() -> None:
    a = torch.tensor([[1, 2, 3], [4, 5, 6]])
    b = torch.tensor([[1, 9, 3], [4, 5, 7]])
    c = torch.tensor([[2, 9, 8], [0, 5, 8]])
    assert ensemble([a, b, c]).tolist() == [[1, 9, 3], [4, 5, 6]]  # last: 6/7/8 tie -> smallest id
    fused = ensemble([{"grid": a}, {"grid": b}, {"grid": c}])
    assert isinstance(fused, dict) and torch.equal(fused["grid"], ensemble([a, b, c]))
    with pytest.raises(ValueError, match="continuous"):
        ensemble([a], kind="mean")  # token ids are voted, never averaged
    with pytest.raises(ValueError, match="kind"):
        ensemble([a], kind="median")
    maps = [torch.full((2, 2), v) for v in (1.0, 2.0, 6.0)]
    assert torch.equal(ensemble(maps, kind="mean"), torch.full((2, 2), 3.0))
    fused_maps = ensemble([{"depth": m} for m in maps], kind="mean")
    assert isinstance(fused_maps, dict) and torch.equal(fused_maps["depth"], torch.full((2, 2), 3.0))


def test_transforms_fuse_decoded_values() -> None:
    """Ensembling fuses decoded values by the tokenizer transform: classes and binary maps vote, directions are
    renormalised, everything else is the mean in its stored dtype."""
    import numpy as np

    from fourm_core.tokenizers.transforms import make_transform

    classes = [
        np.array([[1, 2], [3, 3]], np.int16),
        np.array([[1, 0], [4, 3]], np.int16),
        np.array([[2, 0], [4, 1]], np.int16),
    ]
    fused = make_transform("classes", 1, 5).fuse(classes)
    assert fused.tolist() == [[1, 0], [4, 3]] and fused.dtype == np.int16
    edges = [np.array([[0, 255, 255]], np.uint8), np.array([[0, 255, 0]], np.uint8), np.array([[255, 0, 0]], np.uint8)]
    assert make_transform("edges", 1).fuse(edges).tolist() == [[0, 255, 0]]
    normals = make_transform("unit_vectors", 3).fuse(
        [np.array([[[1, 0, 0]]], np.float32), np.array([[[0, 1, 0]]], np.float32)]
    )
    np.testing.assert_allclose(normals, [[[0.5**0.5, 0.5**0.5, 0.0]]], rtol=1e-6)
    depth = make_transform("robust_depth", 1).fuse([np.zeros((2, 2), np.float32), np.full((2, 2), 3, np.float32)])
    assert depth.dtype == np.float32 and np.all(depth == 1.5)
    rgb = make_transform("color", 3).fuse([np.zeros((1, 1, 3), np.uint8), np.full((1, 1, 3), 4, np.uint8)])
    assert rgb.dtype == np.uint8 and rgb.tolist() == [[[2, 2, 2]]]
    embedding = make_transform("embedding", 4).fuse(
        [np.array([1, 0, 0, 0], np.float32), np.array([0, 0, 0, 1], np.float32)]
    )
    np.testing.assert_allclose(np.linalg.norm(embedding), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        make_transform("color", 3).fuse([np.zeros((1, 1, 3), np.uint8), np.zeros((2, 1, 3), np.uint8)])


# ---------------------------------------------------------------------------------------------- schemes registry


def test_unknown_scheme_lists_the_known_ones() -> None:
    from fourm_core.inference import UnknownSchemeError, get_scheme, scheme_names

    assert scheme_names()[:3] == ["maskgit", "roar", "autoregressive"]
    with pytest.raises(UnknownSchemeError, match="known: maskgit, roar, autoregressive"):
        get_scheme("diffusion")
    with pytest.raises(ValueError, match="unknown generation scheme 'diffusion'"):
        load_schedule([step("grid", "diffusion")])


def test_a_registered_scheme_is_one_object(model: FourMNetwork, pixels: torch.Tensor) -> None:
    """A scheme of its own (here: fill every position in one pass with the argmax) becomes usable by name in
    schedules; its own rules are checked before compute."""
    from fourm_core.inference import ScheduleError, register_scheme
    from fourm_core.inference.schemes import _LOADED
    from fourm_core.inference.schemes.maskgit import MaskGIT

    class Greedy(MaskGIT):
        name = "greedy_test"

        def check(self, step, info, where) -> None:  # noqa: ANN001
            super().check(step, info, where)
            if step.num_steps != 1:
                raise ScheduleError(f"{where}: greedy_test decodes in one step")

    scheme = register_scheme(Greedy())
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_scheme(Greedy())
        ids = GenerationSampler(model).generate({"px": pixels}, [step("grid", "greedy_test", temperature=0.0)])["grid"]
        want = GenerationSampler(model).generate(
            {"px": pixels}, [step("grid", "maskgit", num_steps=1, temperature=0.0)]
        )["grid"]
        assert torch.equal(ids, want)
        with pytest.raises(ScheduleError, match="greedy_test decodes in one step"):
            GenerationSampler(model).generate({"px": pixels}, [step("grid", "greedy_test", num_steps=2)])
    finally:
        _LOADED.pop(scheme.name)
