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

FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

COPY --from=ghcr.io/astral-sh/uv:0.12.1 /uv /usr/local/bin/uv

# libgl1/libglib2.0-0t64: OpenCV's shared libraries; tini reaps the worker's pool
# processes and forwards SIGTERM, so `docker stop` is a warm Celery shutdown.
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
COPY cli ./cli
COPY engine ./engine
COPY scheduler ./scheduler
COPY studio ./studio
COPY assets ./assets

# /data holds jobs and models. Studio and workers must share it (a named volume
# on one host, NFS or similar across hosts): it is the job file storage.
ENV FUSION_DATA_DIR=/data \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860
VOLUME ["/data"]
EXPOSE 7860

# uid 1000 (the base image's "ubuntu" user is removed to free it): files on a
# shared NFS directory then belong to the same uid on every machine.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --create-home --uid 1000 fusion \
    && mkdir -p /data && chown fusion /data
USER fusion

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "app.py"]
