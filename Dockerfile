# CPU image of `mtl serve`. Every step lives in docker/install.sh and docker/entrypoint.sh, which the
# test suite runs outside a container (tests/serving/test_docker_scripts.py).
#   make image                       (docker build -f Dockerfile -t mtl-serve:cpu .)
#   docker run --rm -p 8000:8000 -v "$PWD/runs/landcover/quickstart/export:/bundle:ro" mtl-serve:cpu
FROM python:3.11-slim-bookworm

ENV MTL_VENV=/opt/mtl/venv \
    MTL_SRC=/opt/mtl/src \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /opt/mtl/src

COPY docker/ docker/
RUN docker/install.sh user
# Dependencies first (only pyproject.toml): a code change does not reinstall torch. CPU-only torch wheels.
COPY pyproject.toml README.md ./
RUN MTL_TORCH_INDEX=https://download.pytorch.org/whl/cpu docker/install.sh deps
COPY common/ common/
COPY roofnet/ roofnet/
COPY fwi/ fwi/
COPY housebrain/ housebrain/
COPY landcover/ landcover/
RUN MTL_INSTALL_DEPS=0 docker/install.sh project

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["/opt/mtl/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/opt/mtl/src/docker/entrypoint.sh"]
