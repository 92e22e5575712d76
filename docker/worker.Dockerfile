# syntax=docker/dockerfile:1.7
# Occulta GPU worker image: Celery worker running the audit battery on CUDA.
#
# The PyTorch CUDA runtime base brings CUDA, cuDNN and NCCL matched to torch 2.14.1; the
# constraint below keeps pip from replacing that torch while it installs the audit extra.
# Set PYTORCH_IMAGE to the digest-pinned form (`pytorch/pytorch:<tag>@sha256:...`) when releasing.

ARG PYTORCH_IMAGE=pytorch/pytorch:2.14.1-cuda12.8-cudnn9-runtime

FROM ${PYTORCH_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY . /src
# A venv over the base interpreter's site-packages: torch/torchvision/CUDA libraries are reused
# from the base image (pip sees the pin already satisfied and downloads no second torch), and
# only Occulta and its light dependencies land in /opt/occulta, the one path the runtime copies.
RUN python -c "import torch, torchvision; print('torch==' + torch.__version__.split('+')[0]); print('torchvision==' + torchvision.__version__.split('+')[0])" \
        > /src/base-torch.txt \
 && grep -qx 'torch==2.14.1' /src/base-torch.txt \
 && python -m venv --system-site-packages /opt/occulta \
 && /opt/occulta/bin/pip install --constraint /src/base-torch.txt "/src[audit,server]"

FROM ${PYTORCH_IMAGE} AS runtime
ARG OCCULTA_UID=10001
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/occulta/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor \
    HF_HUB_OFFLINE=1 \
    OMP_NUM_THREADS=4 \
    OCCULTA_ENV=production \
    OCCULTA_DEVICE=cuda \
    OCCULTA_WORKER_CONCURRENCY=1 \
    OCCULTA_DATA_DIR=/var/lib/occulta
COPY --from=build /opt/occulta /opt/occulta
RUN groupadd --system --gid ${OCCULTA_UID} occulta \
 && useradd --system --uid ${OCCULTA_UID} --gid ${OCCULTA_UID} --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin occulta \
 && install -d -o ${OCCULTA_UID} -g ${OCCULTA_UID} -m 0750 /var/lib/occulta
USER 10001:10001
WORKDIR /var/lib/occulta
ENTRYPOINT ["occulta"]
CMD ["worker"]
