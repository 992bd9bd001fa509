"""The install leaves exactly one ONNX Runtime (the GPU build) and one OpenCV build."""

from importlib import metadata

import onnxruntime


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def test_only_the_gpu_onnxruntime_is_installed():
    assert _installed("onnxruntime-gpu")
    # The CPU build shares the module name and would silently take over.
    for other in ("onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        assert not _installed(other), f"{other} is installed beside onnxruntime-gpu"


def test_gpu_build_lists_cuda_even_without_a_gpu():
    providers = onnxruntime.get_available_providers()
    assert "CUDAExecutionProvider" in providers
    assert "CPUExecutionProvider" in providers


def test_only_one_opencv_build():
    builds = [
        name
        for name in (
            "opencv-python",
            "opencv-python-headless",
            "opencv-contrib-python",
            "opencv-contrib-python-headless",
        )
        if _installed(name)
    ]
    assert builds == ["opencv-python"]
