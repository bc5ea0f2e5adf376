"""Captions from the scene graph: counts, colours, spatial relations computed from the visible objects, and place.

Only visible things are mentioned; relations come from their image-space boxes and depths, so they are true.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from fourm_core.sources.synthetic.classes import PLACE_WORDS

NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
PLURALS = {
    "person": "people",
    "bench": "benches",
    "sports ball": "balls",
    "potted plant": "potted plants",
    "dining table": "dining tables",
    "teddy bear": "teddy bears",
    "tv": "tvs",
    "cake": "cakes",
}
PLACES = {
    "street": "on a street",
    "room": "in a room",
    "park": "in a park",
    "beach": "on a beach",
    "snowfield": "in the snow",
}


def noun(label: str, count: int) -> str:
    """``"two red cups"`` style noun phrase without the colour."""
    if count == 1:
        return label
    return PLURALS.get(label, label + "s")


def article(phrase: str) -> str:
    """``"an orange bench"``, ``"a red cup"``."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def relation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where ``a`` is relative to ``b``: left of / right of from image boxes, in front of / behind from depth."""
    ax, bx = (a["box"][0] + a["box"][2]) / 2, (b["box"][0] + b["box"][2]) / 2
    az, bz = a["position"][2], b["position"][2]
    if abs(az - bz) > 2.5:
        return "in front of" if az < bz else "behind"
    if abs(ax - bx) > 0.12:
        return "left of" if ax < bx else "right of"
    return "next to"


def describe(graph: list[dict[str, Any]], ground: str, scene_type: str, rng: np.random.Generator) -> str:
    """One to three sentences about the visible scene graph."""
    place = PLACE_WORDS.get(ground, PLACES[scene_type])
    if not graph:
        return f"an empty scene {place}."
    counts = Counter(o["label"] for o in graph)
    biggest = sorted(graph, key=lambda o: -o["pixels"])
    main = biggest[0]
    same = [o for o in graph if o["label"] == main["label"]]
    colours = {o["colour"] for o in same}
    colour = f"{next(iter(colours))} " if len(colours) == 1 and main["label"] != "person" else ""
    n = len(same)
    phrase = f"{colour}{noun(main['label'], n)}"
    head = article(phrase) if n == 1 else f"{NUMBERS.get(n, 'many')} {phrase}"
    others = [o for o in biggest if o["label"] != main["label"]]
    sentences = []
    template = int(rng.integers(0, 3))
    if others and template > 0:
        other = others[0]
        other_phrase = article(f"{other['colour']} {other['label']}") if other["label"] != "person" else "a person"
        sentences.append(f"{head} {relation(main, other)} {other_phrase} {place}.")
    else:
        sentences.append(f"{head} {place}.")
    named = {main["label"]} | ({others[0]["label"]} if others and template > 0 else set())
    rest = [label for label in counts if label not in named]
    if rest and template != 1:
        listed = ", ".join(
            article(lab) if counts[lab] == 1 else f"{NUMBERS.get(counts[lab], 'many')} {noun(lab, counts[lab])}"
            for lab in rest[:3]
        )
        sentences.append(f"there {'is' if counts[rest[0]] == 1 else 'are'} also {listed}.")
    if template == 2 and scene_type in ("street", "park", "beach"):
        sentences.append("the sky is clear.")
    return " ".join(sentences)
