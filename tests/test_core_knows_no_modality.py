"""The core never names a modality: no string literal in ``fourm_core/`` code mentions a plugin name or model key.

Docstrings and comments may use examples; string literals are what code could branch on. Data sources and shipped
configuration files are exempt (they describe data, not dispatch).
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from fourm_core.registry import Registry

CORE = Path(__file__).resolve().parents[1] / "fourm_core"
EXEMPT_DIRS = {"sources"}
#: String-like token types: Python 3.12+ splits f-strings into FSTRING_* tokens, older versions keep one STRING.
TEXT_TOKENS = (
    {tokenize.STRING} | {tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else {tokenize.STRING}
)


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    out = []
    previous = tokenize.NEWLINE
    for tok in tokens:
        docstring = tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
        if tok.type in TEXT_TOKENS and not docstring:
            out.append((tok.start[0], tok.string))
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok.type
    return out


def _forbidden() -> set[str]:
    reg = Registry(strict=False)
    names = set()
    for modality in reg.modalities():
        names.add(modality.name)
        names.update(modality.model_key(p) for p in modality.spec.presets)
        names.add(modality.spec.key)
    return names


def test_no_modality_name_or_model_key_in_core_string_literals() -> None:
    forbidden = _forbidden()
    assert {"depth", "tok_depth@224", "metadata", "caption", "det", "rgb"} <= forbidden
    pattern = re.compile(
        r"(?<![\w@])(" + "|".join(sorted(map(re.escape, forbidden), key=len, reverse=True)) + r")(?![\w@])"
    )
    hits = []
    for path in sorted(CORE.rglob("*.py")):
        if EXEMPT_DIRS & set(path.relative_to(CORE).parts):
            continue
        for line, literal in _string_literals(path):
            if match := pattern.search(literal):
                hits.append(f"{path.relative_to(CORE.parent)}:{line}: {match.group(1)!r} in {literal[:60]}")
    assert not hits, "the core names modalities:\n" + "\n".join(hits)


def test_the_scan_would_catch_a_branch_on_a_name(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text(
        'def f(spec):\n    """Uses depth in a docstring, which is fine."""\n'
        '    if spec.name == "depth":\n        return 1\n'
    )
    literals = [text for _, text in _string_literals(offender)]
    assert literals == ['"depth"']
