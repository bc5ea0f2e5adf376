"""Generate ``docs/plugin_api.md`` from :mod:`fourm_core.hookspecs` (as datasette generates its plugin hook docs).

The hook specifications are the plugin API reference: their signatures and docstrings are the single source, and the
markdown page is a rendering of them for readers on the web. ``tests/test_docs.py`` fails when the committed page
differs from what this module renders from the live hookspecs, so a docstring edit cannot silently leave the page
behind. Regenerate with::

    .venv/bin/python -m fourm_core.apps.docs            # writes docs/plugin_api.md
    .venv/bin/python -m fourm_core.apps.docs --check    # exit status 1 when the page is stale
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

#: Where the page lives, relative to the repository root, and the command that regenerates it (named in the page
#: and in the staleness test's message).
PLUGIN_API_PAGE = Path("docs") / "plugin_api.md"
REGENERATE = "python -m fourm_core.apps.docs"

_PHASE = re.compile(r"^# (?!-)(.+)$")
_RULE = re.compile(r"^# -{20,}$")
_ROLE = re.compile(r":(?:class|func|data|mod|meth|attr|exc):`~?([^`]+)`")


def _rst_to_markdown(text: str) -> str:
    """The small reST subset the docstrings use, as markdown: ``literal`` becomes `literal`, cross-reference roles
    become code (``~`` keeps only the last name, as Sphinx shows it) and ``::`` literal blocks become fenced code."""

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        shown = target.rsplit(".", 1)[-1] if match.group(0).count("~") else target
        return f"`{shown}`"

    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = _ROLE.sub(role, lines[i]).replace("``", "`")
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        lead = line.rstrip()[:-2].rstrip()
        out.append(lead + ":" if lead else "")
        block: list[str] = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
            block.append(lines[i])
            i += 1
        body = textwrap.dedent("\n".join(block)).strip("\n")
        out += ["", "```python", body, "```", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def hookspecs_in_order(module: ModuleType) -> list[tuple[str, list[Callable[..., Any]]]]:
    """The module's hook specifications in source order, grouped under the phase banner comment above each
    (``# Phase 1: discover`` between two rules of dashes); hooks above the first banner fall in a group named
    ``Hooks``."""
    project = getattr(module, "PROJECT", "fourm")
    hooks = [f for f in vars(module).values() if callable(f) and hasattr(f, f"{project}_spec")]
    hooks.sort(key=lambda f: inspect.getsourcelines(f)[1])
    source = inspect.getsource(module).splitlines()
    banners = [
        (number, match.group(1).strip())
        for number, line in enumerate(source, start=1)
        if (match := _PHASE.match(line))
        and 1 < number < len(source)
        and _RULE.match(source[number - 2])
        and _RULE.match(source[number])
    ]
    groups: list[tuple[str, list[Callable[..., Any]]]] = []
    for hook in hooks:
        line = inspect.getsourcelines(hook)[1]
        title = next((t for n, t in reversed(banners) if n < line), "Hooks")
        if not groups or groups[-1][0] != title:
            groups.append((title, []))
        groups[-1][1].append(hook)
    return groups


def _signature(hook: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return`` with annotations as written (they are strings under PEP 563)."""

    def shown(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    signature = inspect.signature(hook)
    params = ", ".join(
        p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {shown(p.annotation)}"
        for p in signature.parameters.values()
    )
    result = (
        "" if signature.return_annotation is inspect.Signature.empty else f" -> {shown(signature.return_annotation)}"
    )
    return f"{hook.__name__}({params}){result}"


def render_plugin_api(module: ModuleType | None = None) -> str:
    """The markdown page for ``module`` (default: :mod:`fourm_core.hookspecs`, imported live)."""
    if module is None:
        from fourm_core import hookspecs

        module = hookspecs
    project = getattr(module, "PROJECT", "fourm")
    groups = hookspecs_in_order(module)
    parts = [
        "# Plugin API reference",
        "",
        f"<!-- Generated from {module.__name__} by `{REGENERATE}`; edit the hookspec docstrings, not this file. -->",
        "",
        _rst_to_markdown(inspect.getdoc(module) or ""),
        "## Hooks",
        "",
    ]
    for title, hooks in groups:
        parts.append(f"- {title}: " + ", ".join(f"[`{h.__name__}`](#{h.__name__})" for h in hooks))
    parts.append("")
    for title, hooks in groups:
        parts += [f"## {title}", ""]
        for hook in hooks:
            options = getattr(hook, f"{project}_spec") or {}
            parts += [f"### {hook.__name__}", "", "```python", _signature(hook), "```", ""]
            if options.get("firstresult"):
                parts += ["Called until the first implementation returns a non-None result (`firstresult`).", ""]
            parts.append(_rst_to_markdown(inspect.getdoc(hook) or ""))
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page (default) or, with ``--check``, report whether the committed page is current."""
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=PLUGIN_API_PAGE, help=f"page to write (default {PLUGIN_API_PAGE})")
    parser.add_argument("--check", action="store_true", help="exit 1, changing nothing, when the page is stale")
    args = parser.parse_args(argv)
    page = render_plugin_api()
    current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
    if args.check:
        if current != page:
            print(f"{args.out} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
