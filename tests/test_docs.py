"""The plugin API reference (docs/plugin_api.md) is generated from the live hookspecs and committed; it must match."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from fourm_core import hookspecs
from fourm_core.apps.docs import PLUGIN_API_PAGE, REGENERATE, hookspecs_in_order, main, render_plugin_api

ROOT = Path(__file__).resolve().parents[1]


def test_committed_plugin_api_page_matches_the_hookspecs() -> None:
    page = ROOT / PLUGIN_API_PAGE
    assert page.is_file(), f"{PLUGIN_API_PAGE} is missing: run `{REGENERATE}` from the repository root"
    assert page.read_text(encoding="utf-8") == render_plugin_api(), (
        f"{PLUGIN_API_PAGE} is stale (a hookspec changed): run `{REGENERATE}` from the repository root and commit it"
    )


def test_every_hook_is_on_the_page_once_under_its_phase() -> None:
    page = render_plugin_api()
    hooks = [n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec")]
    groups = hookspecs_in_order(hookspecs)
    assert sorted(h.__name__ for _, members in groups for h in members) == sorted(hooks)
    for title, members in groups:
        for hook in members:
            assert page.count(f"\n### {hook.__name__}\n") == 1, hook.__name__
            assert page.index(f"\n## {title}\n") < page.index(f"\n### {hook.__name__}\n"), (title, hook.__name__)
            summary = (inspect.getdoc(hook) or "").splitlines()[0].replace("``", "`")
            assert f"```python\n{hook.__name__}(" in page and summary in page, hook.__name__


def _module(source: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A hookspec module written to a file and imported, so that inspect finds its source as for a real one."""
    path = folder / "throwaway_hookspecs.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("throwaway_hookspecs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "throwaway_hookspecs", module)
    spec.loader.exec_module(module)
    return module


def test_rendering_groups_by_banner_and_converts_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module(
        '''
        """Fake hooks.

        Example::

            register(x)
        """
        from __future__ import annotations
        import pluggy

        PROJECT = "fake"
        hookspec = pluggy.HookspecMarker(PROJECT)

        # ----------------------------------------------------------------------------------------------------------
        # Phase A: first
        # ----------------------------------------------------------------------------------------------------------

        @hookspec(firstresult=True)
        def first_hook(value: int) -> str | None:
            """Returns ``value`` as :class:`~pkg.mod.Thing`, see :func:`pkg.helper`."""

        # a plain comment, not a banner

        # ----------------------------------------------------------------------------------------------------------
        # Phase B: second
        # ----------------------------------------------------------------------------------------------------------

        @hookspec
        def second_hook(register: Callable[[int], None]) -> None:
            """Call ``register``."""
        ''',
        tmp_path,
        monkeypatch,
    )
    page = render_plugin_api(module)
    assert [(t, [h.__name__ for h in hs]) for t, hs in hookspecs_in_order(module)] == [
        ("Phase A: first", ["first_hook"]),
        ("Phase B: second", ["second_hook"]),
    ]
    assert "Example:\n\n```python\nregister(x)\n```" in page
    assert (
        "first_hook(value: int) -> str | None" in page
        and "second_hook(register: Callable[[int], None]) -> None" in page
    )
    assert "Returns `value` as `Thing`, see `pkg.helper`." in page
    assert "first implementation returns a non-None result" in page and "plain comment" not in page
    assert page.index("## Phase A: first") < page.index("### first_hook") < page.index("## Phase B: second")


def test_check_mode_reports_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plugin_api.md"
    out.write_text("old\n")
    assert main(["--check", "--out", str(out)]) == 1
    assert REGENERATE in capsys.readouterr().err and out.read_text() == "old\n"
    assert main(["--out", str(out)]) == 0 and main(["--check", "--out", str(out)]) == 0
    assert out.read_text() == render_plugin_api()
