# The ragsweep image for Ray clusters on Kubernetes (k8s/) and anywhere else a container runs.
#
#   docker build --build-arg VARIANT=cpu -t ghcr.io/your-org/ragsweep:0.1.0-cpu .   # llama.cpp + SmolLM2, CPU torch
#   docker build --build-arg VARIANT=gpu -t ghcr.io/your-org/ragsweep:0.1.0-gpu .   # vLLM and its CUDA torch
#
# Both variants have the same Python, Ray and ragsweep (Ray needs them equal on every node), the Ray dashboard
# and job server (extra `cluster`) and an MLflow server that can use PostgreSQL and S3 (extra
# `tracking-server`). The project lives in /opt/ragsweep; everything runs as the unprivileged user 1000.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim
ARG VARIANT=cpu

# build tools: llama-cpp-python builds from source (cpu); wget: KubeRay's health probes call it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git wget \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group ray

WORKDIR /opt/ragsweep
COPY pyproject.toml README.md constraints-cpu.txt ./
COPY scripts ./scripts
COPY search ./search
COPY pipelines ./pipelines
COPY judges ./judges
COPY configs ./configs
COPY data ./data

# cpu: the same install as on a developer machine (constraints-cpu.txt pins the CPU torch; portable llama.cpp
# build). gpu: no constraints file, so pip takes vLLM's own torch/CUDA build.
RUN if [ "$VARIANT" = "cpu" ]; then \
        RAGSWEEP_EXTRAS=cpu,cluster,tracking-server RAGSWEEP_WHEEL_CACHE=/tmp/wheels bash scripts/install.sh; \
    elif [ "$VARIANT" = "gpu" ]; then \
        python -m venv .venv && .venv/bin/pip install --no-cache-dir -e ".[gpu,cluster,tracking-server]"; \
    else \
        echo "VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 1; \
    fi \
    && rm -rf /tmp/wheels /root/.cache \
    && chown -R ray:ray /opt/ragsweep

ENV PATH=/opt/ragsweep/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0
USER 1000
CMD ["ragsweep", "--help"]
