"""A generated scene benchmark for captioning, VQA and classification (CLEVR-like).

No captioning or VQA data can be had offline, so the vision–language models of the pipeline are
trained and measured on scenes drawn here: 224 × 224 images of 2 to 6 flat objects (4 shapes,
6 colours, two sizes, solid or striped) on a textured background, some overlapping. Each scene
is a pure function of ``(seed, split, index)`` and carries

* ``label`` — the class of its largest object, ``"<colour> <shape>"`` (:data:`CLASSES`, 24);
* ``captions`` — five reference captions from a small grammar (word order, synonyms, spatial
  relation of its two largest objects);
* ``qa`` — question–answer pairs: shape, colour, size, existence, counting, left / right and
  above / below relations, comparisons of counts.

Every object has its own colour within a scene, so "the red object" names one object. This is a
generated benchmark in the spirit of CLEVR / Sort-of-CLEVR, not COCO or VQAv2: its numbers say
how well a codec keeps what a trained model needs, not how a model fares on natural images.

>>> from taskcodec.zoo import scenes
>>> s = scenes.scene(0, "test", 3)
>>> s.image.shape, s.label_name in scenes.CLASSES
((224, 224, 3), True)
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Sequence, Tuple

import numpy as np

from taskcodec.errors import BadInputError

__all__ = ["SHAPES", "COLOURS", "CLASSES", "SPLITS", "SIZE", "QUESTION_TYPES", "SceneObject",
           "Scene", "scene", "scenes", "question_type", "vocabulary"]

SIZE = 224
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (215, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
    "yellow": (235, 205, 40), "purple": (140, 60, 180), "cyan": (40, 200, 210),
}
CLASSES = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
"""Classification labels: colour and shape of a scene's largest object."""
SPLITS = {"train": 0, "val": 1, "test": 2}
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")
_SMALL_R, _LARGE_R = (11, 17), (23, 31)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object: ``r`` is its size in pixels (shapes of equal ``r`` have equal area)."""

    shape: str
    colour: str
    size: str  # "small" or "large"
    x: float
    y: float
    r: float
    striped: bool


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [224, 224, 3]
    objects: Tuple[SceneObject, ...]  # largest first
    label: int
    captions: Tuple[str, ...]
    qa: Tuple[Tuple[str, str], ...]

    @property
    def label_name(self) -> str:
        return CLASSES[self.label]


# ---------------------------------------------------------------------------- layout, drawing
def _layout(rng: np.random.Generator) -> List[SceneObject]:
    n = int(rng.integers(2, 7))
    colours = rng.permutation(list(COLOURS))[:n]
    radii = []
    for _ in range(n):
        lo, hi = _LARGE_R if rng.random() < 0.5 else _SMALL_R
        radii.append(float(rng.uniform(lo, hi)))
    radii.sort(reverse=True)
    if radii[0] < _LARGE_R[0]:  # the largest object is a large one, clearly the largest
        radii[0] = float(rng.uniform(*_LARGE_R))
    radii = [radii[0]] + [min(r, radii[0] - 4.0) for r in radii[1:]]
    placed: List[SceneObject] = []
    for colour, r in zip(colours, radii):
        for _ in range(200):  # centres apart: overlaps stay partial
            x, y = rng.uniform(1.6 * r + 2, SIZE - 1.6 * r - 2, size=2)  # triangles reach 1.55 r
            if all(math.hypot(x - o.x, y - o.y) > 0.8 * (r + o.r) for o in placed):
                break
        placed.append(SceneObject(str(rng.choice(SHAPES)), str(colour),
                                  "large" if r >= _LARGE_R[0] else "small",
                                  float(x), float(y), r, bool(rng.random() < 0.3)))
    return placed


def _mask(o: SceneObject, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dx, dy = xx - o.x, yy - o.y
    if o.shape == "circle":
        return dx * dx + dy * dy <= o.r * o.r
    if o.shape == "square":
        h = 0.886 * o.r
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if o.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.253 * o.r
    # triangle, pointing up, equal area: side 2.69 r, centroid at (x, y)
    side = 2.693 * o.r
    h = side * math.sqrt(3) / 2
    top, bottom = -2 * h / 3, h / 3
    half_width = (dy - top) / h * side / 2
    return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= half_width)


def _render(objects: Sequence[SceneObject], rng: np.random.Generator) -> np.ndarray:
    # background: a smooth random field around a light grey, plus fine grain
    coarse = rng.normal(0, 18, size=(4, 4, 3)).astype(np.float32)
    idx = np.linspace(0, 3, SIZE, dtype=np.float32)
    i0 = np.minimum(idx.astype(int), 2)
    f = (idx - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # [224, 4, 3]
    img = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
    img += 200.0 + rng.normal(0, 5, size=(SIZE, SIZE, 3)).astype(np.float32)
    for o in objects:  # largest first: smaller objects drawn over larger ones
        e = 1.6 * o.r + 1  # a window around the object
        y0, y1 = max(int(o.y - e), 0), min(int(o.y + e) + 1, SIZE)
        x0, x1 = max(int(o.x - e), 0), min(int(o.x + e) + 1, SIZE)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        m = _mask(o, yy, xx)
        colour = np.asarray(COLOURS[o.colour], np.float32) + rng.normal(0, 10, 3).astype(np.float32)
        shade = np.ones(m.shape, np.float32)
        if o.striped:
            angle = float(rng.uniform(0, math.pi))
            shade[((xx * math.cos(angle) + yy * math.sin(angle)) // 4) % 2 == 0] = 0.6
        window = img[y0:y1, x0:x1]
        grain = rng.normal(0, 4, size=(int(m.sum()), 3)).astype(np.float32)
        window[m] = shade[m][:, None] * colour + grain
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- language
def _name(o: SceneObject, size_word: str = "") -> str:
    return " ".join(w for w in (size_word, o.colour, o.shape) if w)


def _relation(a: SceneObject, b: SceneObject) -> Tuple[str, str]:
    """Where ``a`` is relative to ``b``, and the inverse."""
    if abs(a.x - b.x) >= abs(a.y - b.y):
        return ("to the left of", "to the right of") if a.x < b.x else ("to the right of", "to the left of")
    return ("above", "below") if a.y < b.y else ("below", "above")


def _captions(objects: Sequence[SceneObject]) -> Tuple[str, ...]:
    a, b = objects[0], objects[1]
    rel, inv = _relation(a, b)
    big = {"large": "big", "small": "little"}
    return (
        f"a {_name(a, a.size)} {rel} a {_name(b, b.size)}",
        f"there is a {_name(a, a.size)} {rel} a {_name(b, b.size)}",
        f"a {_name(b, b.size)} {inv} a {_name(a, a.size)}",
        f"a {_name(a, big[a.size])} {rel} a {_name(b, big[b.size])}",
        f"{_NUMBERS[len(objects)]} shapes with a {_name(a, a.size)} {rel} a {_name(b, b.size)}",
    )


def _questions(objects: Sequence[SceneObject], rng: np.random.Generator) -> Tuple[Tuple[str, str], ...]:
    qa: List[Tuple[str, str]] = []
    o = objects[int(rng.integers(len(objects)))]
    qa.append((str(rng.choice([f"what shape is the {o.colour} object?",
                               f"what is the shape of the {o.colour} thing?"])), o.shape))
    unique = [x for x in objects if sum(y.shape == x.shape for y in objects) == 1]
    if unique:
        u = unique[int(rng.integers(len(unique)))]
        qa.append((f"what colour is the {u.shape}?", u.colour))
    o = objects[int(rng.integers(len(objects)))]
    qa.append((f"is the {o.colour} object large or small?", o.size))
    if rng.random() < 0.5:
        o = objects[int(rng.integers(len(objects)))]
        qa.append((f"is there a {o.colour} {o.shape}?", "yes"))
    else:
        while True:
            c, s = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
            if not any(x.colour == c and x.shape == s for x in objects):
                break
        qa.append((f"is there a {c} {s}?", "no"))
    s = str(rng.choice(SHAPES))
    qa.append((f"how many {s}s are there?", str(sum(x.shape == s for x in objects))))
    qa.append(("how many objects are there?", str(len(objects))))
    i, j = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[int(i)], objects[int(j)]
    if rng.random() < 0.5:
        qa.append((f"is the {a.colour} object to the left of the {b.colour} object?",
                   "yes" if a.x < b.x else "no"))
    else:
        qa.append((f"is the {a.colour} object above the {b.colour} object?",
                   "yes" if a.y < b.y else "no"))
    s1, s2 = rng.choice(SHAPES, size=2, replace=False)
    n1, n2 = (sum(x.shape == s for x in objects) for s in (s1, s2))
    if n1 != n2:
        qa.append((f"are there more {s1}s than {s2}s?", "yes" if n1 > n2 else "no"))
    qa.append(("what colour is the largest object?", objects[0].colour))
    return tuple(qa)


# ---------------------------------------------------------------------------- public
def scene(seed: int, split: str, index: int) -> Scene:
    """Scene ``index`` of ``split`` (``"train"``, ``"val"``, ``"test"``) for ``seed``: the same
    arguments give the same scene on every machine (numpy's PCG64 stream, float32 drawing)."""
    if split not in SPLITS:
        raise BadInputError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if int(seed) < 0 or int(index) < 0:
        raise BadInputError("seed and index must be non-negative")
    rng = np.random.default_rng([int(seed), SPLITS[split], int(index)])
    objects = _layout(rng)
    image = _render(objects, rng)
    label = CLASSES.index(f"{objects[0].colour} {objects[0].shape}")
    return Scene(image, tuple(objects), label, _captions(objects), _questions(objects, rng))


def scenes(seed: int, split: str, n: int, start: int = 0) -> List[Scene]:
    """Scenes ``start .. start + n - 1`` of ``split``."""
    return [scene(seed, split, i) for i in range(start, start + int(n))]


QUESTION_TYPES = ("shape", "colour of a shape", "size", "existence", "count of a shape",
                  "count of objects", "left of", "above", "more than", "largest colour")
"""The kinds of question :func:`scene` asks, as :func:`question_type` names them."""


def question_type(question: str) -> str:
    """Which of :data:`QUESTION_TYPES` a question of :func:`scene` is (``BadInputError`` for a
    question of no template here)."""
    if question == "how many objects are there?":
        return "count of objects"
    if question == "what colour is the largest object?":
        return "largest colour"
    for prefix, kind in (("how many ", "count of a shape"), ("is there a ", "existence"),
                         ("are there more ", "more than"), ("what colour is the ", "colour of a shape")):
        if question.startswith(prefix):
            return kind
    if "to the left of" in question:
        return "left of"
    if " above " in question:
        return "above"
    if "large or small" in question:
        return "size"
    if question.startswith(("what shape is the ", "what is the shape of the ")):
        return "shape"
    raise BadInputError(f"not a question of the scene templates: {question!r}")


def vocabulary() -> List[str]:
    """Every word the captions, questions and answers use, sorted (the tokenizer's words)."""
    words = set("a there is with shapes shape what the of thing colour object large or small "
                "how many are objects to left right above below more than yes no largest "
                "big little".split())
    words |= set(SHAPES) | {s + "s" for s in SHAPES} | set(COLOURS) | set(_NUMBERS)
    words |= {str(i) for i in range(7)}
    return sorted(words) + ["?"]
