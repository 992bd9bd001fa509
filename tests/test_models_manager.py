"""ModelManager on real files: stand-in ONNX models with their own real hashes, the real
SCRFD weights from ../shared when present, and the embedded MTCNN nets."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import threading
import zlib
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from engine.errors import ModelUnavailable
from engine.models import cli as models_cli
from engine.models.licences import parse_licence_filter
from engine.models.manager import ModelManager, default_models_dir
from engine.models.registry import REGISTRY, ModelSpec, mtcnn_files
from engine.progress import Progress
from tests.test_models_download import LOCAL, ModelServer, Route

SCRFD = Path(__file__).resolve().parents[2] / "shared/models/scrfd_2.5g.onnx"


def standin_onnx(width: int) -> bytes:
    """A real, loadable ONNX graph (y = x + 1) standing in for a downloadable model."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, width])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "one"], ["output"])], "g", [x], [y], [one]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def spec_for(name: str, kind: str, data: bytes, urls: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        filename=f"{name}.onnx",
        urls=urls,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="test only",
        input_size=4,
        embedded=False,
        description="stand-in",
    )


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


@pytest.fixture
def standins(server):
    """Two stand-in detectors and a swapper, served by the local server."""
    blobs = {"det_a": standin_onnx(4), "det_b": standin_onnx(8), "swap": standin_onnx(16)}
    registry = {"mtcnn": REGISTRY["mtcnn"], "classic": REGISTRY["classic"]}
    for name, data in blobs.items():
        server.routes[f"/{name}.onnx"] = Route(data)
        kind = "swapper" if name == "swap" else "detector"
        registry[name] = spec_for(name, kind, data, (server.url(f"/{name}.onnx"),))
    return registry, blobs


def manager_for(models_dir: Path, registry) -> ModelManager:
    return ModelManager(models_dir, registry, backoff=0.0, timeout=5.0, allow_http_hosts=LOCAL)


def test_require_missing_model_explains_the_manual_step(standins, tmp_path):
    registry, _ = standins
    manager = manager_for(tmp_path / "models", registry)
    with pytest.raises(ModelUnavailable) as info:
        manager.require("det_a")
    message = info.value.message
    assert "python app.py models download det_a" in message
    assert str(tmp_path / "models" / "det_a.onnx") in message
    assert registry["det_a"].urls[0] in message
    assert manager.path("det_a") is None
    assert manager.status("det_a").state == "missing"


def test_download_installs_a_loadable_verified_model(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    reports: list[Progress] = []
    path = manager.download("det_a", progress=reports.append)
    assert path == tmp_path / "det_a.onnx"
    assert path.read_bytes() == blobs["det_a"]
    assert reports and reports[-1].done == reports[-1].total == len(blobs["det_a"])
    assert {r.stage for r in reports} == {"download"}
    status = manager.status("det_a")
    assert status.installed and status.verified and status.state == "installed"
    assert manager.require("det_a") == path
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]


def test_download_of_installed_model_makes_no_request(standins, server, tmp_path):
    registry, _ = standins
    manager = manager_for(tmp_path, registry)
    manager.download("det_a")
    manager.download("det_a")
    assert len(server.requests_for("/det_a.onnx")) == 1


def test_two_threads_share_one_download(standins, server, tmp_path):
    registry, blobs = standins
    server.routes["/swap.onnx"].stall = 0.3
    manager = manager_for(tmp_path, registry)
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(manager.download("swap"))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(paths) == 2 and paths[0] == paths[1]
    assert len(server.requests_for("/swap.onnx")) == 1
    assert paths[0].read_bytes() == blobs["swap"]


def test_hand_placed_file_is_hashed_once_then_trusted_via_sidecar(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_b.onnx"
    file.write_bytes(blobs["det_b"])
    assert manager.is_installed("det_b") and not manager.status("det_b").verified
    assert manager.require("det_b") == file
    sidecar = json.loads((tmp_path / "det_b.onnx.verified").read_text())
    assert sidecar["sha256"] == registry["det_b"].sha256
    assert sidecar["size"] == file.stat().st_size
    assert manager.status("det_b").verified
    # Same size and mtime: the cached verdict is used (the file is not re-hashed) ...
    stat = file.stat()
    damaged = bytearray(blobs["det_b"])
    damaged[-1] ^= 0xFF
    file.write_bytes(bytes(damaged))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert manager.require("det_b") == file
    # ... and once the mtime moves, the file is hashed again and rejected.
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ModelUnavailable, match="failed its checksum"):
        manager.require("det_b")


def test_corrupt_hand_placed_file_is_rejected_not_deleted(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_a.onnx"
    damaged = bytearray(blobs["det_a"])
    damaged[len(damaged) // 2] ^= 0x01
    file.write_bytes(bytes(damaged))
    with pytest.raises(ModelUnavailable) as info:
        manager.require("det_a")
    message = info.value.message
    assert registry["det_a"].sha256 in message
    assert hashlib.sha256(bytes(damaged)).hexdigest() in message
    assert str(file) in message
    assert file.exists()
    status = manager.status("det_a")
    assert not status.installed and status.state == "invalid"
    assert manager.best("detector", ["det_a"]) is None


def test_download_replaces_a_bad_file(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_a.onnx"
    file.write_bytes(b"\0" * len(blobs["det_a"]))
    with pytest.raises(ModelUnavailable):
        manager.require("det_a")
    manager.download("det_a")
    assert file.read_bytes() == blobs["det_a"]
    assert manager.require("det_a") == file


def test_wrong_size_file_is_rejected_without_hashing(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    (tmp_path / "det_a.onnx").write_bytes(blobs["det_a"][:-10])
    assert not manager.is_installed("det_a")
    with pytest.raises(ModelUnavailable, match=f"{len(blobs['det_a']) - 10} bytes"):
        manager.require("det_a")
    assert not (tmp_path / "det_a.onnx.verified").exists()


def test_best_picks_first_installed_of_the_kind(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    assert manager.best("detector", ["det_a", "det_b"]) is None
    (tmp_path / "det_b.onnx").write_bytes(blobs["det_b"])
    assert manager.best("detector", ["det_a", "det_b"]) == "det_b"
    assert manager.best("detector", ["swap", "det_b"]) == "det_b"  # wrong kind skipped
    assert manager.best("detector", ["nope", "mtcnn"]) == "mtcnn"  # embedded counts
    assert manager.best("swapper", ["classic"]) == "classic"


def test_unknown_name_lists_known_models(standins, tmp_path):
    registry, _ = standins
    manager = manager_for(tmp_path, registry)
    with pytest.raises(ModelUnavailable, match="unknown model 'nope'; known models: .*det_a"):
        manager.require("nope")
    with pytest.raises(ModelUnavailable, match="known models"):
        models_cli.download_model(manager, "nope", out=io.StringIO())


def test_models_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv("FUSION_MODELS_DIR", raising=False)
    assert default_models_dir(tmp_path) == tmp_path / "models"
    monkeypatch.setenv("FUSION_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert default_models_dir(tmp_path) == tmp_path / "elsewhere"


def test_embedded_mtcnn_files_resolve():
    files = mtcnn_files()
    assert set(files) == {"pnet", "rnet", "onet"}
    for path in files.values():
        onnx.checker.check_model(str(path))
    manager = ModelManager(Path("unused-models-dir"))
    status = manager.status("mtcnn")
    assert status.installed and status.embedded and status.state == "embedded"
    assert manager.require("mtcnn") == files["pnet"].parent
    assert status.size == sum(p.stat().st_size for p in files.values())


def test_cli_lists_and_downloads(standins, tmp_path):
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    (tmp_path / "det_b.onnx.part").write_bytes(blobs["det_b"][: len(blobs["det_b"]) // 2])
    out = io.StringIO()
    models_cli.download_model(manager, "det_a", out=out)
    assert "verified and saved" in out.getvalue()
    table = io.StringIO()
    models_cli.list_models(manager, out=table)
    lines = {line.split()[0]: line for line in table.getvalue().splitlines() if line}
    assert "installed" in lines["det_a"]
    assert "partial 50%" in lines["det_b"]
    assert "missing" in lines["swap"]
    assert "embedded" in lines["mtcnn"]
    assert str(tmp_path) in table.getvalue()


def test_registry_pins_look_like_real_pins():
    for spec in REGISTRY.values():
        if spec.embedded:
            assert spec.check == "none"
            continue
        assert spec.urls and all(u.startswith("https://") for u in spec.urls)
        assert all(u.endswith("/" + spec.filename) for u in spec.urls)
        assert spec.sha256 == "" or re.fullmatch("[0-9a-f]{64}", spec.sha256)
        assert spec.crc32 == "" or re.fullmatch("[0-9a-f]{8}", spec.crc32)
        assert spec.size >= 0 and spec.license
        assert spec.check in ("sha256", "crc32", "hash-file")
    assert {"mtcnn", "classic", "scrfd_2.5g", "det_10g", "arcface_w600k_r50"} <= set(REGISTRY)
    assert {"inswapper_128", "gfpgan_1.4"} <= set(REGISTRY)
    # MODELS-2.md §2a: the catalogue is honest about what sources state.
    assert REGISTRY["inswapper_128"].size == 555_303_150
    assert REGISTRY["inswapper_128"].crc32 == "7057c6ea"
    assert REGISTRY["hyperswap_1b_256"].check == "crc32"
    assert REGISTRY["hyperswap_1b_256"].crc32 == "36312901"
    assert REGISTRY["hyperswap_1b_256"].size == 0  # ~403 MB is only a rounded figure
    assert REGISTRY["uniface_256"].check == "hash-file"


@pytest.mark.skipif(not SCRFD.is_file(), reason=f"real SCRFD weights not present at {SCRFD}")
def test_real_scrfd_weights_pass_the_registry_checksum(tmp_path):
    manager = ModelManager(tmp_path)
    shutil.copyfile(SCRFD, tmp_path / "scrfd_2.5g.onnx")
    assert manager.require("scrfd_2.5g") == tmp_path / "scrfd_2.5g.onnx"
    assert manager.status("scrfd_2.5g").verified
    assert manager.best("detector", ["det_10g", "scrfd_2.5g"]) == "scrfd_2.5g"


@pytest.mark.skipif(not SCRFD.is_file(), reason=f"real SCRFD weights not present at {SCRFD}")
def test_corrupted_scrfd_copy_is_rejected(tmp_path):
    manager = ModelManager(tmp_path)
    data = bytearray(SCRFD.read_bytes())
    data[len(data) // 3] ^= 0x10
    (tmp_path / "scrfd_2.5g.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable) as info:
        manager.require("scrfd_2.5g")
    assert REGISTRY["scrfd_2.5g"].sha256 in info.value.message
    assert "scrfd_2.5g" in info.value.message


# -- checks beyond SHA-256 ----------------------------------------------------------------


def crc(data: bytes) -> str:
    """FaceFusion's ``.hash`` content: zlib CRC32 of the whole file, 8 lower-case hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def unpinned(spec: ModelSpec, **fields) -> ModelSpec:
    """The spec with no sha256 and no size: what the catalogue holds for most FF models."""
    return dataclasses.replace(spec, sha256="", size=0, **fields)


@pytest.fixture
def weak(standins):
    """det_a pinned by CRC32 only, det_b by nothing (its .hash is the check)."""
    registry, blobs = standins
    registry = dict(registry)
    registry["det_a"] = unpinned(registry["det_a"], crc32=crc(blobs["det_a"]), size_hint=2_500_000)
    registry["det_b"] = unpinned(registry["det_b"])
    return registry, blobs


def test_crc32_pinned_download_records_the_sha256_jobs_pin(weak, server, tmp_path):
    registry, blobs = weak
    manager = manager_for(tmp_path, registry)
    assert manager.file_sha256("det_a") == ""  # nothing verified yet
    path = manager.download("det_a")
    assert path.read_bytes() == blobs["det_a"]
    sidecar = json.loads((tmp_path / "det_a.onnx.verified").read_text())
    assert sidecar["check"] == "crc32"
    assert sidecar["sha256"] == hashlib.sha256(blobs["det_a"]).hexdigest()
    assert manager.file_sha256("det_a") == hashlib.sha256(blobs["det_a"]).hexdigest()
    status = manager.status("det_a")
    assert status.verified and status.check == "crc32" and not status.unchecked
    assert manager.require("det_a") == path
    assert server.requests_for("/det_a.hash") == []


def test_crc32_pinned_require_rejects_a_corrupt_file(weak, tmp_path):
    registry, blobs = weak
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_a.onnx"
    damaged = bytearray(blobs["det_a"])
    damaged[10] ^= 0x02
    file.write_bytes(bytes(damaged))
    assert manager.is_installed("det_a")  # no size to compare: only the checksum can tell
    with pytest.raises(ModelUnavailable) as info:
        manager.require("det_a")
    message = info.value.message
    assert f"expected crc32 {crc(blobs['det_a'])}" in message
    assert crc(bytes(damaged)) in message and str(file) in message
    assert file.exists() and manager.status("det_a").state == "invalid"
    assert manager.file_sha256("det_a") == ""
    file.write_bytes(blobs["det_a"])
    assert manager.require("det_a") == file


def test_hash_file_is_fetched_beside_the_model_and_checked(weak, server, tmp_path):
    registry, blobs = weak
    server.routes["/det_b.hash"] = Route(crc(blobs["det_b"]).encode())
    manager = manager_for(tmp_path, registry)
    path = manager.download("det_b")
    assert (tmp_path / "det_b.hash").read_text() == crc(blobs["det_b"])
    assert path.read_bytes() == blobs["det_b"]
    assert manager.status("det_b").verified and manager.status("det_b").check == "hash-file"
    assert manager.file_sha256("det_b") == hashlib.sha256(blobs["det_b"]).hexdigest()
    # The stored .hash keeps checking the file: a changed file fails it.
    other = manager_for(tmp_path, registry)
    damaged = bytearray(blobs["det_b"])
    damaged[-3] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(ModelUnavailable, match=f"expected crc32 {crc(blobs['det_b'])}"):
        other.require("det_b")


def test_hash_file_mismatch_is_refused(weak, server, tmp_path):
    registry, blobs = weak
    server.routes["/det_b.hash"] = Route(crc(b"another file").encode())
    manager = manager_for(tmp_path, registry)
    with pytest.raises(ModelUnavailable, match="failed its checksum"):
        manager.download("det_b")
    assert not (tmp_path / "det_b.onnx").exists()
    assert not (tmp_path / "det_b.hash").exists()
    assert manager.status("det_b").state == "missing"


def test_hand_placed_model_without_its_hash_file_is_used_unchecked(weak, server, tmp_path):
    registry, blobs = weak
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_b.onnx"
    file.write_bytes(blobs["det_b"])
    status = manager.status("det_b")
    assert status.installed and status.unchecked and not status.verified
    assert manager.file_sha256("det_b") == ""
    assert manager.require("det_b") == file
    assert manager.file_sha256("det_b") == hashlib.sha256(blobs["det_b"]).hexdigest()
    table = io.StringIO()
    models_cli.list_models(manager, out=table)
    assert "installed (unchecked)" in table.getvalue()
    assert "det_b" in table.getvalue().split("warning: ")[-1]
    assert "det_b.hash is not beside it" in table.getvalue()
    # `download` fetches its .hash and checks the file in place: no model request.
    server.routes["/det_b.hash"] = Route(crc(blobs["det_b"]).encode())
    assert manager.download("det_b") == file
    assert server.requests_for("/det_b.onnx") == []
    assert manager.status("det_b").verified and not manager.status("det_b").unchecked


def test_hand_placed_hash_file_that_does_not_match_is_refused(weak, tmp_path):
    registry, blobs = weak
    manager = manager_for(tmp_path, registry)
    (tmp_path / "det_b.onnx").write_bytes(blobs["det_b"])
    (tmp_path / "det_b.hash").write_text("deadbeef")
    with pytest.raises(ModelUnavailable) as info:
        manager.require("det_b")
    assert "expected crc32 deadbeef" in info.value.message
    assert str(tmp_path / "det_b.hash") in info.value.message
    (tmp_path / "det_b.hash").write_text("not a crc")
    assert manager.status("det_b").state == "invalid"
    with pytest.raises(ModelUnavailable, match="does not hold a CRC32"):
        manager.require("det_b")


# -- dependencies and the licence filter --------------------------------------------------


@pytest.fixture
def ghostlike(server):
    """A swapper that needs a converter and a recognizer, like GHOST (MODELS-2.md §5.3)."""
    blobs = {"swap_g": standin_onnx(16), "conv": standin_onnx(4), "rec": standin_onnx(8)}
    registry = {"mtcnn": REGISTRY["mtcnn"], "classic": REGISTRY["classic"]}
    licences = {"swap_g": "Apache-2.0", "conv": "MIT", "rec": "Non-Commercial (InsightFace)"}
    kinds = {"swap_g": "swapper", "conv": "converter", "rec": "recognizer"}
    for name, data in blobs.items():
        server.routes[f"/{name}.onnx"] = Route(data)
        spec = spec_for(name, kinds[name], data, (server.url(f"/{name}.onnx"),))
        registry[name] = dataclasses.replace(spec, license=licences[name])
    registry["swap_g"] = dataclasses.replace(registry["swap_g"], converter="conv", recognizer="rec")
    return registry, blobs


def test_download_brings_the_models_a_model_needs(ghostlike, server, tmp_path):
    registry, blobs = ghostlike
    manager = manager_for(tmp_path, registry)
    assert manager.requirements("swap_g") == ["conv", "rec"]
    assert manager.requirements("conv") == []
    reports: list[Progress] = []
    assert manager.download("swap_g", progress=reports.append) == tmp_path / "swap_g.onnx"
    for name, data in blobs.items():
        assert (tmp_path / f"{name}.onnx").read_bytes() == data
        assert manager.status(name).verified
        named = [r for r in reports if r.message and f"{name}.onnx" in r.message]
        assert named and named[-1].done == named[-1].total == len(data)
    out = io.StringIO()
    models_cli.download_model(manager_for(tmp_path / "cli", registry), "swap_g", out=out)
    text = out.getvalue()
    assert "licence Non-Commercial (InsightFace) (class non-commercial)" in text
    assert "licence MIT (class permissive)" in text
    assert text.count("verified and saved") == 3


def test_licence_filter_hides_models_and_their_dependants(ghostlike, tmp_path):
    registry, blobs = ghostlike
    for name, data in blobs.items():
        (tmp_path / f"{name}.onnx").write_bytes(data)
    manager = ModelManager(tmp_path, registry, licences=parse_licence_filter("permissive"))
    assert [s.name for s in manager.list()] == ["mtcnn", "classic", "conv"]
    with pytest.raises(ModelUnavailable) as info:
        manager.spec("swap_g")
    assert "licence filter" in info.value.message
    assert "it needs rec, whose licence class is non-commercial" in info.value.message
    with pytest.raises(ModelUnavailable, match="licence filter"):
        manager.require("rec")
    assert manager.best("swapper", ["swap_g", "classic"]) == "classic"
    assert manager.best("converter", ["conv"]) == "conv"
    everything = ModelManager(tmp_path, registry, licences=parse_licence_filter("all"))
    assert everything.best("swapper", ["swap_g"]) == "swap_g"


def test_the_real_catalogue_under_a_permissive_filter():
    """MODELS-2.md §15: GHOST is Apache-2.0, but needs the non-commercial ArcFace w600k."""
    full = ModelManager(Path("unused-models-dir"))
    assert full.requirements("ghost_1_256") == ["crossface_ghost", "arcface_w600k_r50"]
    strict = ModelManager(Path("unused-models-dir"), licences=frozenset({"permissive"}))
    names = {s.name for s in strict.list()}
    assert {"gfpgan_1.4", "2dfan4", "yunet_2023_mar", "classic"} <= names
    assert not names & {"ghost_1_256", "arcface_w600k_r50", "inswapper_128", "codeformer"}


def test_cli_list_shows_checks_classes_and_rounded_sizes(weak, tmp_path):
    registry, blobs = weak
    manager = manager_for(tmp_path, registry)
    table = io.StringIO()
    models_cli.list_models(manager, out=table)
    lines = table.getvalue().splitlines()
    assert lines[0].split() == [
        "NAME", "KIND", "FAMILY", "STATE", "CHECK", "SIZE", "MB", "LICENCE", "CLASS", "LICENCE"
    ]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines[1:] if line}
    assert rows["det_a"][3:6] == ["missing", "crc32", "~2.5"]  # only a rounded size is known
    assert rows["det_b"][3:6] == ["missing", "hash-file", "-"]
    assert rows["swap"][3:6] == ["missing", "sha256", f"{len(blobs['swap']) / 1e6:.1f}"]
    assert rows["mtcnn"][4] == "none" and rows["mtcnn"][6] == "permissive"


def test_a_sidecar_from_before_crc32s_still_spares_a_rehash(standins, tmp_path):
    """Sidecars written by earlier versions hold size, mtime_ns and sha256 only."""
    registry, blobs = standins
    manager = manager_for(tmp_path, registry)
    file = tmp_path / "det_a.onnx"
    damaged = bytearray(blobs["det_a"])
    damaged[5] ^= 0x08  # same size; only a rehash could tell
    file.write_bytes(bytes(damaged))
    stat = file.stat()
    (tmp_path / "det_a.onnx.verified").write_text(
        json.dumps(
            {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": registry["det_a"].sha256}
        )
    )
    assert manager.status("det_a").verified
    assert manager.require("det_a") == file
    assert manager.file_sha256("det_a") == registry["det_a"].sha256
