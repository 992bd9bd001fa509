"""The user's catalogue.json: real stand-in ONNX files with each family's tensors, real
checksums, and one bad entry of every kind, each skipped with a warning naming it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from pathlib import Path

import pytest
from onnx import TensorProto, helper, save

from engine.models import cli as models_cli
from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from engine.models.user_catalogue import load_user_catalogue
from tests.standins.enhancers import make_enhancer
from tests.standins.inswapper import make_inswapper


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crc(path: Path) -> str:
    return f"{zlib.crc32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def make_crossface(path: Path) -> Path:
    """A CrossFace-like converter (MODELS-2.md §5.3): ``input`` f32 [1,512] → [1,512]."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 512])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 512])
    half = helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "half"], ["output"])], "crossface", [x], [y], [half]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    save(model, str(path))
    return path


@pytest.fixture
def files(tmp_path):
    """Stand-in files in the models dir, with the tensors of their families."""
    custom = tmp_path / "custom"
    custom.mkdir()
    return {
        # inswapper (MODELS.md): target [1,3,128,128], source [1,512] → [1,3,128,128]
        "swap": make_inswapper(custom / "my_swap.onnx"),
        # face enhancer (MODELS-2.md §8): input [1,3,S,S] → [1,3,S,S]
        "enhance": make_enhancer(custom / "my_gfpgan.onnx", size=256),
        "convert": make_crossface(custom / "my_crossface.onnx"),
        "double": make_enhancer(custom / "double.onnx", size=64, elem_type=TensorProto.DOUBLE),
        "extra": make_enhancer(custom / "extra.onnx", size=64, extra_inputs=("noise",)),
    }


def write_catalogue(models_dir: Path, entries) -> None:
    (models_dir / "catalogue.json").write_text(json.dumps(entries))


def good_entries(files) -> list[dict]:
    return [
        {
            "name": "my_swap",
            "kind": "swapper",
            "family": "inswapper",
            "file": "custom/my_swap.onnx",
            "sha256": sha(files["swap"]),
            "licence": "MIT",
        },
        {
            "name": "my_gfpgan",
            "kind": "enhancer",
            "family": "gfpgan",
            "file": "custom/my_gfpgan.onnx",
            "crc32": crc(files["enhance"]).upper(),  # case is not significant
            "licence": "Proprietary, ask the author",
            "size": 256,
        },
        {
            "name": "my_crossface",
            "kind": "converter",
            "family": "crossface",
            "file": "custom/my_crossface.onnx",
            "sha256": sha(files["convert"]),
            "crc32": crc(files["convert"]),
        },
        {  # converter named: a catalogue entry that comes before it; recognizer default
            "name": "my_ghost",
            "kind": "swapper",
            "family": "ghost",
            "file": "custom/my_swap.onnx",
            "sha256": sha(files["swap"]),
            "converter": "my_crossface",
        },
        {  # not downloaded yet: listed as missing, checked when downloaded and loaded
            "name": "later",
            "kind": "enhancer",
            "family": "codeformer",
            "file": "later.onnx",
            "sha256": "ab" * 32,
            "urls": ["https://example.org/later.onnx"],
        },
    ]


def bad_entries(files) -> list[tuple[object, str | None]]:
    """(entry, the field its warning must name); each is otherwise a good entry."""

    def entry(name: str, **fields) -> dict:
        base = {
            "name": name,
            "kind": "swapper",
            "family": "inswapper",
            "file": "custom/my_swap.onnx",
            "sha256": sha(files["swap"]),
        }
        base.update(fields)
        return {k: v for k, v in base.items() if v is not None}

    wrong_sha = "0" * 64
    return [
        (42, None),
        (entry("bad_kind", kind="swaper"), "kind"),
        (entry("bad_family", family="inswaper"), "family"),
        (entry("bad_family_for_kind", kind="enhancer", family="inswapper"), "family"),
        (entry("Bad Name"), "name"),
        (entry("my_swap"), "name"),  # a duplicate of the good entry
        (entry("inswapper_128"), "name"),  # a built-in name
        (entry("no_file", file="custom/absent.onnx"), "file"),
        (entry("absolute", file=str(files["swap"])), "file"),
        (entry("escapes", file="../outside.onnx"), "file"),
        (entry("builtin_file", file="inswapper_128.onnx"), "file"),
        (entry("wrong_sha", sha256=wrong_sha), "sha256"),
        (entry("wrong_crc", sha256=None, crc32="00000000"), "crc32"),
        (entry("no_checksum", sha256=None), "sha256"),
        (entry("bad_sha", sha256="xyz"), "sha256"),
        (entry("http_url", urls=["http://example.org/m.onnx"]), "urls"),
        (entry("unknown_converter", family="ghost", converter="nope"), "converter"),
        (entry("not_a_recognizer", recognizer="gfpgan_1.4"), "recognizer"),
        (entry("takes_no_converter", converter="my_crossface"), "converter"),
        (entry("typo_field", sha265="x"), "sha265"),
        (entry("bad_size", size="big"), "size"),
        # tensors that do not fit the family (MODELS-2.md §6.1: xseg takes NHWC 256×256×3)
        (
            entry(
                "not_xseg",
                kind="occluder",
                family="xseg",
                file="custom/my_gfpgan.onnx",
                sha256=sha(files["enhance"]),
            ),
            "family",
        ),  # fmt: skip
        (
            entry(
                "float64_input",
                kind="enhancer",
                family="gfpgan",
                file="custom/double.onnx",
                sha256=sha(files["double"]),
            ),
            "family",
        ),  # fmt: skip
        (
            entry(
                "two_inputs",
                kind="enhancer",
                family="gfpgan",
                file="custom/extra.onnx",
                sha256=sha(files["extra"]),
            ),
            "family",
        ),  # fmt: skip
    ]


def test_bad_entries_are_skipped_each_with_one_warning(files, tmp_path):
    bad = bad_entries(files)
    write_catalogue(tmp_path, good_entries(files) + [entry for entry, _ in bad])
    loaded, warnings = load_user_catalogue(tmp_path, REGISTRY)
    assert set(loaded) == {"my_swap", "my_gfpgan", "my_crossface", "my_ghost", "later"}
    assert len(warnings) == len(bad)
    good_count = len(good_entries(files))
    for position, (entry, field) in enumerate(bad, good_count + 1):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"entry {name!r} (#{position})" if name else f"entry #{position}"
        mine = [w for w in warnings if label in w]
        assert len(mine) == 1, (label, warnings)
        if field is not None:
            assert f"field '{field}'" in mine[0], mine[0]
        assert mine[0].endswith("entry skipped")
    by_name = {w.split("'")[1]: w for w in warnings if "entry '" in w}
    assert "0" * 64 in by_name["wrong_sha"] and sha(files["swap"]) in by_name["wrong_sha"]
    assert "float64" in by_name["float64_input"]
    assert "'noise'" in by_name["two_inputs"]


def test_good_entries_become_custom_models(files, tmp_path):
    write_catalogue(tmp_path, good_entries(files))
    manager = ModelManager(tmp_path)
    assert manager.warnings == []
    names = [s.name for s in manager.list()]
    assert names[: len(REGISTRY)] == list(REGISTRY)  # built-ins first, then custom
    assert names[len(REGISTRY) :] == ["my_swap", "my_gfpgan", "my_crossface", "my_ghost", "later"]
    swap = manager.spec("my_swap")
    assert swap.custom and swap.family == "inswapper" and swap.licence_class == "permissive"
    assert swap.size == files["swap"].stat().st_size and swap.check == "sha256"
    assert swap.recognizer == "arcface_w600k_r50"  # embedding swappers default to w600k
    gfpgan = manager.spec("my_gfpgan")
    assert gfpgan.check == "crc32" and gfpgan.crc32 == crc(files["enhance"])
    assert gfpgan.licence_class == "unknown" and gfpgan.input_size == 256
    assert manager.requirements("my_ghost") == ["my_crossface", "arcface_w600k_r50"]
    status = manager.status("my_swap")
    assert status.custom and status.installed and status.verified
    assert manager.require("my_gfpgan") == files["enhance"]
    assert manager.file_sha256("my_gfpgan") == sha(files["enhance"])
    assert manager.status("later").state == "missing"
    strict = ModelManager(tmp_path, licences=frozenset({"permissive"}))
    visible = {s.name for s in strict.list()}
    assert "my_swap" not in visible  # needs the non-commercial recognizer
    assert "my_gfpgan" not in visible and "my_crossface" not in visible  # licence unknown


def test_models_list_marks_custom_entries_and_prints_warnings(files, tmp_path):
    write_catalogue(tmp_path, good_entries(files) + [{"name": "oops", "kind": "swaper"}])
    table = io.StringIO()
    models_cli.list_models(ModelManager(tmp_path), out=table)
    text = table.getvalue()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line}
    assert rows["my_swap*"][1:5] == ["swapper", "inswapper", "installed", "sha256"]
    assert rows["my_gfpgan*"][4] == "crc32"
    assert "inswapper_128" in rows  # built-ins carry no mark
    assert f"* custom model from {tmp_path / 'catalogue.json'}" in text
    assert "warning:" in text and "entry 'oops' (#6), field 'kind'" in text


def test_a_custom_file_is_hashed_once_through_the_sidecar(files, tmp_path):
    write_catalogue(tmp_path, good_entries(files)[:1])
    assert "my_swap" in load_user_catalogue(tmp_path, REGISTRY)[0]
    sidecar = json.loads((files["swap"].parent / "my_swap.onnx.verified").read_text())
    assert sidecar["sha256"] == sha(files["swap"]) and "swapper/inswapper" in sidecar["fits"]
    # Same size and mtime: the recorded digests are trusted, the file is not read again ...
    stat = files["swap"].stat()
    data = bytearray(files["swap"].read_bytes())
    data[-1] ^= 0xFF
    files["swap"].write_bytes(bytes(data))
    os.utime(files["swap"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "my_swap" in load_user_catalogue(tmp_path, REGISTRY)[0]
    # ... and once the mtime moves, it is hashed again and refused.
    os.utime(files["swap"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    loaded, warnings = load_user_catalogue(tmp_path, REGISTRY)
    assert loaded == {} and "field 'sha256'" in warnings[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[{", "cannot be read as JSON"),
        ('{"name": "x"}', "must be a JSON array"),
        (b"\xff\xfe", "cannot be read as JSON"),
    ],
)
def test_a_malformed_catalogue_is_one_warning(tmp_path, text, expected):
    path = tmp_path / "catalogue.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    manager = ModelManager(tmp_path)
    assert len(manager.warnings) == 1 and expected in manager.warnings[0]
    assert str(path) in manager.warnings[0]
    assert [s.name for s in manager.list()] == list(REGISTRY)


def test_no_catalogue_no_warnings(tmp_path):
    assert load_user_catalogue(tmp_path / "absent", REGISTRY) == ({}, [])
