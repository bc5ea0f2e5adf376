"""``fourm_register_commands``: a plugin adds a ``fourm`` sub-command; broken or clashing ones are problems naming the
plugin, and every other command keeps working."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fourm_core.apps.cli.main import CORE_COMMANDS, build_parser, main
from fourm_core.hookspecs import hookimpl
from fourm_core.registry import PluginError, Registry
from fourm_core.spec import CommandSpec
from helpers import EXAMPLE_PLUGIN, registry_with

COMMANDS = '''
"""Command factories of the test plugins."""


def configure_hello(parser):
    parser.add_argument("--name", default="world")
    parser.add_argument("--code", type=int, default=0)

    def run(args):
        print(f"hello {args.name}")
        return args.code

    return run


def configure_broken(parser):
    raise ImportError("needs libthermal.so")
'''


@pytest.fixture(autouse=True)
def command_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Module ``fourm_test_commands`` (the factories) on sys.path; the example plugin blocked."""
    (tmp_path / "fourm_test_commands.py").write_text(textwrap.dedent(COMMANDS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    yield
    sys.modules.pop("fourm_test_commands", None)


def plugin(*specs: CommandSpec) -> object:
    class Plugin:
        @staticmethod
        @hookimpl
        def fourm_register_commands(register):  # type: ignore[no-untyped-def]
            for spec in specs:
                register(spec)

    return Plugin()


def registry(*plugins: tuple[str, object], strict: bool = False) -> Registry:
    return Registry([], extra_plugins=plugins, strict=strict)


HELLO = CommandSpec(name="hello", factory="fourm_test_commands:configure_hello", help="say hello")
BROKEN = CommandSpec(name="thermal-stats", factory="fourm_test_commands:configure_broken")


def test_a_plugin_command_runs_with_its_own_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry(("greeter", plugin(HELLO)))
    assert main(["hello", "--name", "fourm", "--code", "3"], registry=reg) == 3
    assert capsys.readouterr().out == "hello fourm\n"
    assert "say hello" in build_parser(reg).format_help()
    assert not reg.problems


def test_a_broken_factory_is_reported_and_the_other_commands_keep_working(capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry(("greeter", plugin(HELLO)), ("thermal", plugin(BROKEN)))
    assert main(["hello"], registry=reg) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello world\n"
    assert "thermal 0+local: command 'thermal-stats' is not available" in captured.err
    assert "needs libthermal.so" in captured.err
    assert [p.kind for p in reg.problems] == ["hook"] and reg.problems[0].plugins == ("thermal 0+local",)
    with pytest.raises(SystemExit):
        main(["thermal-stats"], registry=registry(("thermal", plugin(BROKEN))))


def test_a_name_taken_by_a_core_command_is_a_conflict_naming_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    clash = CommandSpec(name="data", factory="fourm_test_commands:configure_hello")
    reg = registry(("squatter", plugin(clash)))
    assert main(["data", "sources", "--json"], registry=reg) == 0  # the core command is untouched
    assert "squatter 0+local: command 'data' clashes with the core command" in capsys.readouterr().err
    assert [(p.kind, p.plugins) for p in reg.problems] == [("conflict", ("squatter 0+local",))]


def test_two_plugins_claiming_one_name_add_neither(capsys: pytest.CaptureFixture[str]) -> None:
    reg = registry(("a", plugin(HELLO)), ("b", plugin(HELLO)))
    assert "hello" not in build_parser(reg).format_help()
    (problem,) = reg.problems
    assert problem.kind == "conflict" and "'hello' is registered by a 0+local and b 0+local" in problem.message


def test_strict_mode_raises_on_a_broken_command() -> None:
    with pytest.raises(PluginError, match="thermal-stats"):
        build_parser(registry(("thermal", plugin(BROKEN)), strict=True))


def test_an_installed_distribution_adds_a_command_through_its_entry_point(
    make_dist, capsys: pytest.CaptureFixture[str]
) -> None:
    code = """
    from fourm_core.spec import CommandSpec

    @hookimpl
    def fourm_register_commands(register):
        register(CommandSpec(name="hello", factory="fourm_test_commands:configure_hello", help="say hello"))
    """
    make_dist("fourm-greeter", "greeter", code)
    reg = registry_with(disabled={EXAMPLE_PLUGIN})
    assert main(["hello", "--name", "dist"], registry=reg) == 0
    assert capsys.readouterr().out == "hello dist\n"
    assert main(["plugins", "--json"]) == 0  # the default registry finds it too, and shows its hook
    record = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}["greeter"]
    assert record["hooks"] == ["fourm_register_commands"] and record["distribution"] == "fourm-greeter"


def test_the_core_commands_are_a_table() -> None:
    parser = build_parser(registry())
    names = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"plugins", "modalities", "vocab", "validate", "data", "tokenizer", "train", "generate"} <= names
    assert {"retrieve", "bench", "demo"} <= names and len(CORE_COMMANDS) == 8
