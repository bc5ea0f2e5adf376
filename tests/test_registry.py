"""Discovery, validation, conflicts, dependencies and errors-as-data of the plugin registry."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from fourm_core import registry as registry_module
from fourm_core.registry import PluginError, Registry, modality_id
from helpers import EXAMPLE_PLUGIN, OFFICIAL_KEYS, installed_entry_points, registry_with

#: The parameters of the hooks the plugins below implement, where not ``register``.
_HOOK_PARAMETERS = {"masking_chunks": "modality, sequence"}


def _plugin(make_dist, dist: str, tail: str = "", **hooks: tuple[str, ...]) -> EntryPoint:
    """A distribution ``dist`` (entry point named after it) with one ``@hookimpl`` per keyword: the hook name
    without its ``fourm_`` prefix, and the lines of its body; then ``tail``, code as it is. ``LabelerSpec`` and
    ``PresetLayout`` are in scope."""
    code = "from fourm_core.spec import LabelerSpec, PresetLayout\n"
    for hook, lines in hooks.items():
        signature = f"fourm_{hook}({_HOOK_PARAMETERS.get(hook, 'register')})"
        code += f"\n@hookimpl\ndef {signature}:\n" + "".join(f"    {line}\n" for line in lines)
    return make_dist(dist, dist.removeprefix("fourm-").replace("-", "_"), code + tail)


def _registering(make_dist, dist: str, *lines: str) -> Registry:
    """The installed plugins plus a distribution whose only hook, ``fourm_register_modalities``, runs ``lines``:
    most registry failures start from such a plugin."""
    return registry_with(_plugin(make_dist, dist, register_modalities=lines))


def test_builtins_give_21_plugins_19_keys_17_targets(builtin_registry: Registry) -> None:
    assert builtin_registry.problems == []
    assert len(builtin_registry.modalities()) == 21
    keys = builtin_registry.model_keys("paper")
    assert {k: ms[0].id("paper") for k, ms in keys.items()} == OFFICIAL_KEYS
    assert sum(ms[0].spec.is_target for ms in keys.values()) == 17
    assert sorted(m.name for m in keys["metadata"]) == ["metadata_geometric", "metadata_image", "metadata_semantic"]


def test_tiny_preset_keys_carry_the_tiny_resolution(builtin_registry: Registry) -> None:
    keys = builtin_registry.model_keys("tiny")
    assert "tok_depth@64" in keys and "rgb@64" in keys and "caption" in keys
    assert len(keys) == 19
    assert all(ms[0].spec.layout("tiny").max_tokens <= 64 for ms in keys.values() if ms[0].spec.key_has_resolution)


def test_example_plugin_is_discovered_like_a_builtin() -> None:
    reg = Registry(disabled=set(), strict=False)
    albedo = reg.get(EXAMPLE_PLUGIN)
    assert albedo.plugin.distribution == "fourm-albedo"
    assert albedo.model_key("paper") == "tok_albedo@224"
    assert len(reg.modalities()) == 22 and len(reg.model_keys()) == 20


def test_blocking_a_plugin_leaves_the_others_unchanged(builtin_registry: Registry) -> None:
    blocked = Registry(disabled={EXAMPLE_PLUGIN, "color_palette"}, strict=False)
    assert "color_palette" not in blocked and len(blocked.modalities()) == 20
    assert [p for p in blocked.plugins() if p.name == "color_palette"][0].blocked
    for m in blocked.modalities():
        assert m.id("paper") == builtin_registry.get(m.name).id("paper")
        assert m.spec == builtin_registry.get(m.name).spec


def test_blocking_by_distribution_name_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", f"fourm-det, {EXAMPLE_PLUGIN}")
    reg = Registry(strict=False)
    assert "det" not in reg and "caption" in reg
    assert reg.problems == []


def test_a_broken_plugin_is_reported_and_the_rest_loads(make_dist) -> None:
    ep = make_dist("fourm-broken", "broken", "raise ImportError('no module named thermal_sdk')", version="0.3.1")
    reg = registry_with(ep)
    assert len(reg.modalities()) == 21
    (problem,) = reg.problems
    assert problem.kind == "load" and "fourm-broken 0.3.1" in problem.message and "thermal_sdk" in problem.message
    record = [p for p in reg.plugins() if p.name == "broken"][0]
    assert not record.ok and "thermal_sdk" in record.errors[0]
    with pytest.raises(PluginError, match="fourm-broken 0.3.1"):
        registry_with(ep, strict=True)


def test_strict_switch_comes_from_the_environment(make_dist, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = make_dist("fourm-broken", "broken", "raise RuntimeError('boom')")
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="boom"):
        Registry([*installed_entry_points(), ep], disabled={EXAMPLE_PLUGIN})


def test_a_new_distribution_registers_without_changing_other_ids(make_dist, builtin_registry: Registry) -> None:
    reg = _registering(make_dist, "fourm-thermal", 'register(image_spec("thermal"))')
    assert reg.problems == []
    assert reg.get("thermal").plugin.label == "fourm-thermal 9.9.9"
    assert reg.get("thermal").id("paper") == modality_id("tok_thermal@224")
    for m in builtin_registry.modalities():
        assert reg.get(m.name).id("paper") == m.id("paper")


def test_a_hook_that_raises_marks_only_its_plugin(make_dist) -> None:
    reg = _registering(make_dist, "fourm-flaky", 'raise ValueError("calibration file missing")')
    assert len(reg.modalities()) == 21
    assert [p.kind for p in reg.problems] == ["hook"]
    assert "fourm-flaky 9.9.9" in reg.problems[0].message and "calibration file missing" in reg.problems[0].message


def test_an_invalid_spec_names_the_field(make_dist) -> None:
    reg = _registering(
        make_dist,
        "fourm-bad",
        'register({"name": "bad", "key": "bad", "kind": "pixels", "embedding": "2d", "vocabulary": "none",',
        '          "masking": "token", "presets": {}})',
    )
    (problem,) = reg.problems
    assert "fourm-bad 9.9.9" in problem.message
    assert "must be input_only" in problem.message and "missing preset layouts" in problem.message


def test_two_plugins_claiming_one_name_are_both_rejected(make_dist) -> None:
    reg = _registering(make_dist, "fourm-better-depth", 'register(image_spec("depth", key="tok_better_depth"))')
    messages = [p.message for p in reg.problems]
    assert any("'depth'" in m and "fourm-depth 0.1.0" in m and "fourm-better-depth 9.9.9" in m for m in messages)
    assert "depth" not in reg
    # metadata_geometric needs depth, so it goes too, with a message naming both ends
    assert "metadata_geometric" not in reg
    assert any("'metadata_geometric'" in m and "'depth'" in m for m in messages)


def test_a_shared_model_key_outside_a_group_is_a_conflict(make_dist) -> None:
    reg = _registering(make_dist, "fourm-depth2", 'register(image_spec("depth2", key="tok_depth"))')
    conflict = [p for p in reg.problems if p.kind == "conflict"][0]
    assert "tok_depth@224" in conflict.message
    assert "fourm-depth 0.1.0" in conflict.message and "fourm-depth2 9.9.9" in conflict.message


def _metadata_member_registry(make_dist, max_tokens: int) -> Registry:
    """A registry with a third-party ``metadata_audio`` modality asking to join the ``metadata`` group with
    ``max_tokens`` per preset (the official members agree on 43, so that number decides whether it may join)."""
    return _registering(
        make_dist,
        "fourm-metadata-audio",
        f"layout = PresetLayout(max_tokens={max_tokens})",
        'register(ModalitySpec(name="metadata_audio", key="metadata", group="metadata", kind="sequence",',
        '                      embedding="1d", vocabulary="text", masking="chunk", chunk_tags=("v1=30",),',
        '                      presets={"paper": layout, "tiny": layout}))',
    )


def test_joining_a_group_requires_agreeing_on_the_model_facing_fields(make_dist) -> None:
    reg = _metadata_member_registry(make_dist, max_tokens=60)
    assert any("group 'metadata'" in p.message and "presets" in p.message for p in reg.problems)


def test_a_matching_group_member_joins_the_shared_key(make_dist) -> None:
    reg = _metadata_member_registry(make_dist, max_tokens=43)
    members = [m.name for m in reg.model_keys()["metadata"]]
    assert "metadata_audio" in members and len(members) == 4
    assert reg.get("metadata_audio").id() == OFFICIAL_KEYS["metadata"]


def test_missing_dependency_names_both_ends(make_dist) -> None:
    reg = _registering(make_dist, "fourm-thermal", 'register(image_spec("thermal", depends_on=("infrared_raw",)))')
    (problem,) = reg.problems
    assert problem.kind == "dependency"
    assert "'thermal'" in problem.message and "'infrared_raw'" in problem.message
    assert "thermal" not in reg and len(reg.modalities()) == 21


def test_a_dependency_cycle_names_its_members(make_dist) -> None:
    reg = _registering(
        make_dist,
        "fourm-cycle",
        'register(image_spec("alpha", depends_on=("beta",)))',
        'register(image_spec("beta", depends_on=("alpha",)))',
    )
    messages = sorted(p.message for p in reg.problems)
    assert len(messages) == 2 and all("cycle" in m for m in messages)
    assert "'alpha'" in messages[0] and "'beta'" in messages[0]
    assert "alpha" not in reg and "beta" not in reg


def test_modalities_come_in_dependency_order(builtin_registry: Registry) -> None:
    order = builtin_registry.names()
    for modality in builtin_registry.modalities():
        for dep in (*modality.spec.depends_on, *modality.spec.uses):
            if dep in builtin_registry:
                assert order.index(dep) < order.index(modality.name), (dep, modality.name)


def test_misspelled_and_unmarked_hooks_are_reported(make_dist) -> None:
    unmarked = "\ndef fourm_register_sources(register):\n    pass\n"
    reg = registry_with(_plugin(make_dist, "fourm-typo", tail=unmarked, register_modalitie=("pass",)))
    messages = " ".join(p.message for p in reg.problems)
    assert "unknown hooks ['fourm_register_modalitie']" in messages
    assert "without @hookimpl" in messages and "fourm_register_sources" in messages


def test_a_part_for_an_unknown_modality_is_reported(make_dist) -> None:
    register = ('register(LabelerSpec(modality="sonar", name="echo", factory="os.path:join"))',)
    reg = registry_with(_plugin(make_dist, "fourm-orphan", register_labelers=register))
    assert [p.kind for p in reg.problems] == ["part"]
    assert "'sonar'" in reg.problems[0].message


def test_third_party_labelers_join_and_the_owner_default_comes_first(make_dist) -> None:
    owner = _plugin(
        make_dist,
        "fourm-thermal",
        register_modalities=('register(image_spec("thermal"))',),
        register_labelers=(
            'register(LabelerSpec(modality="thermal", name="planck", factory="os.path:join", default=True))',
        ),
    )
    other = _plugin(
        make_dist,
        "fourm-thermal-models",
        register_labelers=(
            'register(LabelerSpec(modality="thermal", name="a_network", factory="os.path:join", default=True))',
        ),
    )
    reg = registry_with(owner, other)
    assert [lab.name for lab in reg.get("thermal").labelers()] == ["planck", "a_network"]


def test_serializers_are_built_lazily_and_once(builtin_registry: Registry) -> None:
    det = builtin_registry.get("det")
    assert det.serializer() is det.serializer()
    with pytest.raises(PluginError, match="no serializer"):
        builtin_registry.serializer("depth")
    depth = builtin_registry.get("depth")
    assert depth.tokenizer() is depth.tokenizer()  # the generic family the spec declares, built once
    with pytest.raises(PluginError, match="no learned tokenizer"):
        builtin_registry.get("caption").tokenizer()


def test_unknown_modality_error_suggests_close_names(builtin_registry: Registry) -> None:
    with pytest.raises(KeyError, match="did you mean.*depth"):
        builtin_registry.get("dpeth")


def test_default_chunking_splits_metadata_before_every_tag(builtin_registry: Registry) -> None:
    chunks = builtin_registry.masking_chunks("metadata_image", "v1=10 v0=20 v1=17 v0=3 v1=5 v0=2")
    assert chunks == ["v1=10 v0=20", "v1=17 v0=3", "v1=5 v0=2"]
    with pytest.raises(ValueError, match="masked by span"):
        builtin_registry.masking_chunks("caption", "a dog")


def test_the_masking_chunks_hook_overrides_the_default(make_dist) -> None:
    ocr = _plugin(
        make_dist,
        "fourm-ocr",
        register_modalities=(
            'register(ModalitySpec(name="ocr", key="ocr", kind="sequence", embedding="1d", vocabulary="text",',
            '                      masking="chunk", chunk_tags=("line",), presets={',
            '                          "paper": PresetLayout(max_tokens=64), "tiny": PresetLayout(max_tokens=32)}))',
        ),
        masking_chunks=(
            'if modality.name != "ocr":',
            "    return None",
            'return [part.strip() for part in sequence.split("|")]',
        ),
    )
    reg = registry_with(ocr)
    assert reg.masking_chunks("ocr", "stop | one way") == ["stop", "one way"]
    assert reg.masking_chunks("metadata_semantic", "v1=5 v0=1 v1=6 v0=9") == ["v1=5 v0=1", "v1=6 v0=9"]


def test_module_level_facade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    registry_module.reset()
    try:
        assert registry_module.get("depth").model_key("paper") == "tok_depth@224"
        assert len(registry_module.modalities()) == 21
        assert registry_module.problems() == []
        assert {p.name for p in registry_module.plugins()} >= {"depth", EXAMPLE_PLUGIN}
    finally:
        registry_module.reset()


def test_trace_switch_prints_hook_calls(capsys: pytest.CaptureFixture[str]) -> None:
    Registry(disabled={EXAMPLE_PLUGIN}, trace=True)
    err = capsys.readouterr().err
    assert "loading det = fourm_det.plugin from fourm-det 0.1.0" in err
    assert "fourm_register_modalities <- fourm-det 0.1.0: [det]" in err
    assert "fourm_register_serializers <- fourm-det 0.1.0 (declaration): [det]" in err
