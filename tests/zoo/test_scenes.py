"""The generated scene benchmark: determinism, and labels, captions and answers that agree
with the scene drawn."""

from __future__ import annotations

import numpy as np
import pytest

from taskcodec.errors import BadInputError
from taskcodec.zoo import scenes

SAMPLE = scenes.scenes(3, "val", 60)


def test_same_arguments_same_scene_and_splits_differ():
    a, b = scenes.scene(7, "test", 11), scenes.scene(7, "test", 11)
    assert np.array_equal(a.image, b.image) and a.objects == b.objects and a.qa == b.qa
    others = [scenes.scene(7, "train", 11), scenes.scene(8, "test", 11), scenes.scene(7, "test", 12)]
    assert all(not np.array_equal(a.image, o.image) for o in others)
    assert scenes.scenes(7, "test", 3, start=10)[1].qa == a.qa


def test_image_and_objects():
    for s in SAMPLE:
        assert s.image.shape == (224, 224, 3) and s.image.dtype == np.uint8
        assert 2 <= len(s.objects) <= 6
        assert len({o.colour for o in s.objects}) == len(s.objects)  # one object per colour
        r = [o.r for o in s.objects]
        assert r[0] >= max(r[1:]) + 4 - 1e-9  # the largest object is clearly the largest
        assert s.label_name == f"{s.objects[0].colour} {s.objects[0].shape}"
        assert all(o.size == ("large" if o.r >= 23 else "small") for o in s.objects)


def test_the_drawn_pixels_carry_the_label():
    """The largest object's colour is where it was placed, unless a smaller object covers its
    centre; then at least the scene's pixels near its nominal colour exist."""
    hits = 0
    for s in SAMPLE:
        o = s.objects[0]
        px = s.image[int(o.y), int(o.x)].astype(float)
        ref = np.asarray(scenes.COLOURS[o.colour], float)
        if o.striped:  # a stripe may darken the centre pixel to 60 %
            hits += min(np.abs(px - ref).max(), np.abs(px - 0.6 * ref).max()) < 60
        else:
            hits += np.abs(px - ref).max() < 60
    assert hits >= 0.8 * len(SAMPLE)


def test_captions_and_answers_agree_with_the_objects():
    for s in SAMPLE:
        a, b = s.objects[0], s.objects[1]
        assert len(s.captions) == 5
        for c in s.captions:
            assert f"{a.colour} {a.shape}" in c and f"{b.colour} {b.shape}" in c
        for q, ans in s.qa:
            words = q.rstrip("?").split()
            kind = scenes.question_type(q)
            if kind == "count of objects":
                assert ans == str(len(s.objects))
            elif kind == "count of a shape":
                shape = words[2][:-1]
                assert ans == str(sum(o.shape == shape for o in s.objects))
            elif kind == "existence":
                colour, shape = words[3], words[4]
                assert ans == ("yes" if any(o.colour == colour and o.shape == shape
                                            for o in s.objects) else "no")
            elif kind in ("left of", "above"):
                c1, c2 = words[2], words[-2]
                o1, o2 = (next(o for o in s.objects if o.colour == c) for c in (c1, c2))
                first = o1.x < o2.x if kind == "left of" else o1.y < o2.y
                assert ans == ("yes" if first else "no")
            elif kind == "largest colour":
                assert ans == a.colour
            elif kind == "shape":
                colour = words[-2]
                assert ans == next(o.shape for o in s.objects if o.colour == colour)
            elif kind == "colour of a shape":
                shape = words[-1]
                assert [o.colour for o in s.objects if o.shape == shape] == [ans]
            elif kind == "size":
                assert ans == next(o.size for o in s.objects if o.colour == words[2])
            else:
                assert kind == "more than"
                s1, s2 = words[3][:-1], words[5][:-1]
                n1, n2 = (sum(o.shape == x for o in s.objects) for x in (s1, s2))
                assert n1 != n2 and ans == ("yes" if n1 > n2 else "no")
    kinds = {scenes.question_type(q) for s in SAMPLE for q, _ in s.qa}
    assert kinds == set(scenes.QUESTION_TYPES)
    with pytest.raises(BadInputError, match="template"):
        scenes.question_type("what is the meaning of life?")


def test_answers_are_balanced_enough_to_measure():
    answers = [a for s in scenes.scenes(0, "val", 200) for _, a in s.qa]
    yes, no = answers.count("yes"), answers.count("no")
    assert 0.35 < yes / (yes + no) < 0.65
    assert len(set(answers)) >= 20  # shapes, colours, counts, sizes, yes / no


def test_vocabulary_covers_every_word():
    words = set(scenes.vocabulary())
    for s in SAMPLE:
        for text in [*s.captions, *(q for q, _ in s.qa), *(a for _, a in s.qa)]:
            assert set(text.replace("?", " ?").split()) <= words, text


def test_bad_arguments():
    with pytest.raises(BadInputError, match="split"):
        scenes.scene(0, "training", 0)
    with pytest.raises(BadInputError, match="non-negative"):
        scenes.scene(-1, "test", 0)
