# syntax=docker/dockerfile:1.7
# Occulta API image: FastAPI + Celery client + beat + migrations, CPU only.
#
# The API validates every uploaded checkpoint by loading it into the declared architecture
# (safetensors / torch.load(weights_only=True) + timm), so it needs torch -- but never a GPU.
# torch==2.14.1 comes from the PyTorch CPU index: ~200 MB instead of ~3 GB of CUDA libraries.
# Downloads happen only at build time; the running container never fetches anything.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# The CPU wheels first, in their own layer: they change only when the torch pin does.
RUN pip wheel --wheel-dir /wheels \
        --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1+cpu torchvision==0.29.1+cpu \
 && printf 'torch==2.14.1+cpu\ntorchvision==0.29.1+cpu\n' > /wheels/constraints.txt
COPY . /src
RUN pip wheel --wheel-dir /wheels --find-links /wheels \
        --constraint /wheels/constraints.txt "/src[audit,server]"

FROM ${PYTHON_IMAGE} AS runtime
ARG OCCULTA_UID=10001
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/occulta/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HUB_OFFLINE=1 \
    OMP_NUM_THREADS=1 \
    OCCULTA_ENV=production \
    OCCULTA_DEVICE=cpu \
    OCCULTA_DATA_DIR=/var/lib/occulta
# The wheels are bind-mounted from the build stage, so no wheel file stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/occulta \
 && /opt/occulta/bin/pip install --no-index --find-links /wheels \
        --constraint /wheels/constraints.txt "occulta[audit,server]" \
 && groupadd --system --gid ${OCCULTA_UID} occulta \
 && useradd --system --uid ${OCCULTA_UID} --gid ${OCCULTA_UID} --no-create-home \
        --home-dir /tmp --shell /usr/sbin/nologin occulta \
 && install -d -o ${OCCULTA_UID} -g ${OCCULTA_UID} -m 0750 /var/lib/occulta
USER 10001:10001
WORKDIR /var/lib/occulta
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["occulta"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
