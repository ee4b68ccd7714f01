# The Kubernetes-mode image: `vitalstream consume` as PID 1, settings from VITALSTREAM_* variables.
#
#     docker build -t vitalstream .
#     docker run --rm -e VITALSTREAM_STREAM_NAME=... vitalstream                 # consume
#     docker run --rm vitalstream bridge --help                                 # the other runtime command
#
# Two stages, after astral-sh/uv-docker-example's multistage.Dockerfile (with pip): the builder fills
# a virtual environment at /opt/venv, the runtime stage copies only that environment.
# BuildKit (Docker's default builder since 23.0; DOCKER_BUILDKIT=1 before) runs the cache mounts with
# its built-in Dockerfile frontend: no `# syntax=` line, so no frontend image is pulled from a registry.
# tests/integration/test_image.py checks these properties, builds the image and runs it.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, from the lock alone (every version and hash pinned; the project's build backend
# is in it too): this layer is rebuilt only when the lock changes.
COPY requirements/runtime.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --compile --require-hashes --no-deps --requirement runtime.lock

# Then the code that ships, as a wheel of the project built with the locked backend and installed
# without dependencies (they are above): the core, the runtime, the CLI and the Lambda shim; never the
# tools (service/tools/) or the simulator, which the build context does not even hold.
COPY pyproject.toml README.md ./
COPY service/__init__.py ./service/
COPY service/core ./service/core
COPY service/runtime ./service/runtime
COPY service/cli ./service/cli
COPY lambda_shim ./lambda_shim
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --no-build-isolation --wheel-dir wheels . \
    && pip install --no-deps --compile wheels/vitalstream-*.whl

FROM python:3.11-slim AS runtime
COPY --from=builder /opt/venv /opt/venv
# Metrics and probes must answer the kubelet and Prometheus, so bind every interface in the pod.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VITALSTREAM_METRICS_HOST=0.0.0.0
USER 10001:10001
EXPOSE 9400
# Exec form, no shell: SIGTERM reaches the consumer, which finishes its batch and releases its leases.
ENTRYPOINT ["vitalstream"]
CMD ["consume"]
