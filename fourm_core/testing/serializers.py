"""Assertions for a plugin's own serializer tests: the checks every sequence format's tests share.

The conformance suite (:mod:`fourm_core.testing.checks`) runs the contract on generated examples; these helpers are
for the hand-written cases a plugin adds on top (its malformed strings, values it must refuse, random token soup),
so each plugin's tests state only its format's cases and what the messages must say::

    from fourm_core.testing.serializers import assert_parse_error

    def test_missing_class_name_is_named() -> None:
        err = assert_parse_error(DetSerializer(), "v0=1 v1=2 v2=3 v3=4", 4)
        assert "class name" in str(err)
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import pytest

from fourm_core.serialization import SequenceSerializer, SerializationError

__all__ = ["assert_parse_error", "assert_refused_when_writing", "assert_token_soup_is_safe", "value_id"]

_VALUE_TOKEN = re.compile(r"v([0-3])=(\d+)")


def value_id(token: str) -> int:
    """The official ml-4m id of a value token: ``v0=N`` is 204+N, ``v1=N`` 1204+N, ``v2=N`` 2204+N, ``v3=N`` 3204+N."""
    match = _VALUE_TOKEN.fullmatch(token)
    assert match is not None, f"{token!r} is not a value token"
    return 204 + 1000 * int(match.group(1)) + int(match.group(2))


def _check_error(error: pytest.ExceptionInfo[SerializationError], modality: str) -> str:
    """The error is exactly a SerializationError (no subclass standing in for a bug), names the modality as data and
    leads its message with ``[modality]``; returns the message."""
    assert error.type is SerializationError
    assert error.value.modality == modality
    message = str(error.value)
    assert message.startswith(f"[{modality}] "), message
    return message


def assert_parse_error(
    serializer: SequenceSerializer[Any], text: str, position: int | None = None, *words: str
) -> SerializationError:
    """``serializer.parse(text)`` fails with a SerializationError naming the serializer's modality, the token
    ``position`` (when given: the message says ``token N``) and each of ``words``; returns the error."""
    with pytest.raises(SerializationError) as info:
        serializer.parse(text)
    message = _check_error(info, serializer.modality)
    if position is not None:
        assert re.search(rf"\btoken {position}\b", message), message
    for word in words:
        assert word in message, message
    return info.value


def assert_refused_when_writing(
    serializer: SequenceSerializer[Any], value: Any, prefix: str = ""
) -> SerializationError:
    """``serializer.serialize(value)`` refuses the value with a SerializationError naming the modality, its message
    continuing with ``prefix`` (e.g. ``"human 1"`` for the second person); returns the error."""
    with pytest.raises(SerializationError) as info:
        serializer.serialize(value)
    message = _check_error(info, serializer.modality)
    assert message.startswith(f"[{serializer.modality}] {prefix}"), message
    return info.value


def assert_token_soup_is_safe(
    serializer: SequenceSerializer[Any],
    alphabet: Sequence[str],
    *,
    trials: int,
    max_tokens: int,
    valid_prefix: str = "",
    sorts: bool = False,
    seed: int = 0,
) -> None:
    """Random strings of up to ``max_tokens`` tokens from ``alphabet`` either raise a SerializationError naming the
    modality, or parse to a value that writes back stably: ``parse(serialize(value)) == value`` and the written
    string re-serializes to itself (with ``sorts``, a format that writes values in its own order, only the latter).

    With ``valid_prefix`` half of the strings start with that well-formed piece, to reach the checks after it.
    """
    rng = random.Random(seed)
    for _ in range(trials):
        tokens = [rng.choice(alphabet) for _ in range(rng.randint(0, max_tokens))]
        if valid_prefix and rng.random() < 0.5:
            tokens = valid_prefix.split() + tokens
        text = " ".join(tokens)
        try:
            parsed = serializer.parse(text)
        except SerializationError as exc:
            assert exc.modality == serializer.modality, text
            continue
        canonical = serializer.serialize(parsed)
        assert serializer.serialize(serializer.parse(canonical)) == canonical, text
        if not sorts:
            assert serializer.parse(canonical) == parsed, text
