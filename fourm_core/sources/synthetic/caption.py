"""Captions from the scene graph: counts, colours, spatial relations and the place, in varied templates.

Everything said is true of the rendered image: only visible things are mentioned (those with a box), counts are the
numbers of visible instances, colours are the palette names the renderer used, and relations come from the things'
camera-frame positions (left/right from x, in front/behind from depth, "on" from the support graph).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

__all__ = ["NUMBERS", "describe", "plural"]

NUMBERS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
    11: "eleven",
    12: "twelve",
}
_PLURALS = {"person": "people", "bench": "benches", "skis": "pairs of skis"}
_SINGULAR = {"skis": "pair of skis"}
#: Classes whose colour goes unsaid (it is in the name, or fixed by the recipe).
_NO_COLOUR = {"person", "orange", "apple", "tv", "refrigerator"}
SCENE_NOUNS = {
    "street": "street",
    "room": "room",
    "park": "park",
    "beach": "beach",
    "snowfield": "snowy field",
    "playground": "playing field",
}
POSE_PHRASES = {
    "walking": "is walking",
    "waving": "is waving",
    "arms_raised": "has both arms raised",
    "sitting_ground": "is sitting on the ground",
    "standing": "is standing",
}


def plural(label: str) -> str:
    """Plural of a class name as captions write it."""
    return _PLURALS.get(label, label + ("es" if label.endswith(("s", "sh", "ch")) else "s"))


def _singular(label: str) -> str:
    return _SINGULAR.get(label, label)


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _group_phrase(label: str, things: list[dict[str, Any]]) -> str:
    """ "a red car", "two people", "three blue chairs" (a colour only when every member shares it)."""
    n = len(things)
    colours = {t["colour"] for t in things}
    colour = f"{next(iter(colours))} " if len(colours) == 1 and label not in _NO_COLOUR else ""
    if n == 1:
        return _article(colour + _singular(label))
    return f"{NUMBERS.get(n, 'many')} {colour}{plural(label)}"


def _name(thing: dict[str, Any]) -> str:
    """ "the red car", "the person in blue" — a definite description for relation sentences."""
    if thing["label"] == "person":
        return f"the person in {thing['colour']}"
    colour = "" if thing["label"] in _NO_COLOUR else f"{thing['colour']} "
    return f"the {colour}{_singular(thing['label'])}"


def relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where ``a`` is relative to ``b``, from camera-frame positions (x right, z forward) and the support graph."""
    if a.get("on") == b["instance"]:
        return "sitting on" if a["label"] == "person" else "on"
    if b.get("on") == a["instance"]:
        return "under"
    ax, _, az = a["position_camera"]
    bx, _, bz = b["position_camera"]
    dx, dz = ax - bx, az - bz
    if np.hypot(dx, dz) < 1.6:
        return "next to"
    if abs(dz) > 1.5 * abs(dx):
        return "in front of" if dz < 0 else "behind"
    return "to the left of" if dx < 0 else "to the right of"


def _verb(rel: str) -> str:
    return f"is {rel}"


def _pair(ranked: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Two things of different classes to relate: one standing or sitting on another if any, else the largest."""
    by_id = {t["instance"]: t for t in ranked}
    for t in ranked:
        if t.get("on") in by_id:
            return t, by_id[t["on"]]
    a = ranked[0]
    b = next((t for t in ranked[1:] if t["label"] != a["label"]), None)
    return None if b is None else (a, b)


def describe(things: list[dict[str, Any]], scene_type: str, place: str, rng: np.random.Generator) -> str:
    """One to three sentences about the visible scene graph ``things`` (dicts as in ``Scene.objects``)."""
    noun = SCENE_NOUNS[scene_type]
    if not things:
        return str(
            rng.choice([f"an empty {noun}.", f"a quiet {noun} with nothing in it.", f"a view of an empty {noun}."])
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(things, key=lambda t: -t["pixels"]):
        groups.setdefault(t["label"], []).append(t)
    labels = list(groups)[: int(rng.integers(2, 5))]
    listed = _join([_group_phrase(label, groups[label]) for label in labels])
    counts = Counter(t["label"] for t in things)
    verb = "is" if counts[labels[0]] == 1 else "are"
    template = int(rng.integers(4))
    if template == 0:
        first = f"{listed} {place}."
    elif template == 1:
        first = f"{_article(noun)} with {listed}."
    elif template == 2:
        first = f"{place}, there {verb} {listed}."
    else:
        first = f"a photo of {listed} {place}."
    sentences = [first]
    ranked = sorted(things, key=lambda t: -t["pixels"])
    pair = _pair(ranked)
    if pair is not None and rng.random() < 0.8:
        a, b = pair
        sentences.append(f"{_name(a)} {_verb(relation(a, b))} {_name(b)}.")
    people = [t for t in ranked if t["label"] == "person" and t.get("pose") in POSE_PHRASES]
    if people and rng.random() < 0.6:
        p = people[0]
        sentences.append(f"someone in {p['colour']} {POSE_PHRASES[p['pose']]}.")
    return " ".join(sentences)
