"""The Create panel's target face cards show each face's age and gender when a classifier
is installed (issue #14), left to right like every face index."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from engine.faces import Face
from engine.pipeline import FaceEngine
from studio.ui.create import _classified
from studio.ui.faces import CardText, FaceCard, age_gender_details, faces_html
from tests.assets import T1, load
from tests.standins.registry import install_standins

WORDS = CardText("Face {index}", "Source", "none", "Reference", "Source {index}: {name}")


def face(x: float, **answers) -> Face:
    box = np.array([x, 0, x + 50, 50], np.float32)
    return Face(box, 0.9, np.zeros((5, 2), np.float32), **answers)


def test_details_follow_the_left_to_right_numbering():
    faces = [face(100, age=(20, 30), gender="female"), face(0, age=(70, 101), gender="male")]
    assert age_gender_details(faces + [face(200)]) == ["male, 70+", "female, 20–29", ""]


def test_cards_show_the_detail_line():
    card = FaceCard(0, "data:image/jpeg;base64,", None, False, "female, 20–29")
    assert "female, 20–29" in faces_html([card], ["me.jpg"], WORDS)


def test_the_installed_classifier_answers_for_each_face(tmp_path):
    manager = install_standins(tmp_path / "models", ("fairface",))
    engine = FaceEngine(manager)
    studio = SimpleNamespace(models=manager, face_engine=lambda: engine)
    t1 = load(T1)
    found = _classified(studio, t1, engine.detect(t1))
    assert found and all(f.gender in ("female", "male") and f.age is not None for f in found)
    assert all(age_gender_details(found))
    bare = SimpleNamespace(
        models=install_standins(tmp_path / "none", ()), face_engine=lambda: engine
    )
    assert all(f.gender is None for f in _classified(bare, t1, engine.detect(t1)))
