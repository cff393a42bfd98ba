# The ragsweep image for Ray clusters on Kubernetes (k8s/) and anywhere else a container runs.
#
#   make images                 # both variants, tagged $(REGISTRY)/ragsweep:<version>-cpu and -gpu (Makefile)
#   make push                   # push them and print their digests (pin those in k8s/kustomization.yaml)
#
# Both variants install from constraints.txt, the one lock every node uses, so they have the same Python, Ray,
# MLflow and ragsweep (Ray needs them equal on every node); they differ in torch's build and the LLM engine:
#   cpu: llama.cpp + SmolLM2 and the CPU wheel of torch 2.13.0 (PyTorch's CPU index)
#   gpu: vLLM 0.32.0 and the CUDA build of torch 2.13.0 (PyPI)
# Both bring the Ray dashboard and job server (extra `cluster`) and an MLflow server with PostgreSQL, S3 and
# basic-auth support (extra `tracking-server`). The project lives in /opt/ragsweep; everything runs as the
# unprivileged user 10001.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim
ARG VARIANT=cpu

# build tools: llama-cpp-python builds from source (cpu); wget: KubeRay's health probes call it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git wget \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --user-group ray

WORKDIR /opt/ragsweep
COPY pyproject.toml README.md constraints.txt ./
COPY scripts ./scripts
COPY search ./search
COPY pipelines ./pipelines
COPY judges ./judges
COPY configs ./configs
COPY data ./data

RUN if [ "$VARIANT" = "cpu" ]; then \
        PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu RAGSWEEP_EXTRAS=cpu,cluster,tracking-server \
            RAGSWEEP_WHEEL_CACHE=/tmp/wheels bash scripts/install.sh; \
    elif [ "$VARIANT" = "gpu" ]; then \
        python -m venv .venv \
        && .venv/bin/pip install --no-cache-dir -c constraints.txt -e ".[gpu,cluster,tracking-server]"; \
    else \
        echo "VARIANT must be cpu or gpu, not $VARIANT" >&2; exit 1; \
    fi \
    && rm -rf /tmp/wheels /root/.cache \
    && chown -R ray:ray /opt/ragsweep

# The environment comes first on PATH for every shell: ENV for plain commands and `bash -c` (KubeRay v1.4+), and a
# profile.d script for login shells (`bash -lc`: KubeRay v1.3, and v1.4+ with ENABLE_LOGIN_SHELL=true), whose
# /etc/profile resets PATH for non-root users (tests/unit/test_image_shell.py runs it as this image's user).
COPY scripts/image-path.sh /etc/profile.d/ragsweep.sh
ENV PATH=/opt/ragsweep/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0
USER 10001
# For `docker run` outside Kubernetes (Kubernetes uses its own probes): the installed stack imports.
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import ray, mlflow, ragsweep.search.cli"]
CMD ["ragsweep", "--help"]
