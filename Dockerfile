# One image for the three production processes of marketplace_assets; the command chooses which
# (marketplace_assets_tests/deploy_processes.py holds their command lines):
#   code server  dagster code-server start -h 0.0.0.0 -p 4000 -m marketplace_assets.definitions  (default)
#   webserver    dagster-webserver -h 0.0.0.0 -p 3000 -w deploy/workspace.yaml
#   daemon       dagster-daemon run -w deploy/workspace.yaml
# Build from the project root:  docker build -t marketplace-assets:local .
# No credential is baked in: every MARKETPLACE_* setting, DAGSTER_POSTGRES_URL and the other variables
# come from the environment at run time (deploy/docker-compose.yaml, deploy/helm/values.yaml).

# The builder and the final image must be the same Python image: the virtual environment links to the
# interpreter by its path. 3.11, as the locked environment is tested (requires-python >=3.11,<3.14).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# uv from its official image, pinned (the version that wrote uv.lock).
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
# Compile to bytecode at install time (the final image's code directory is read-only to the app user),
# copy files out of the cache mount instead of hard-linking, and use the image's Python, never a download.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=0 \
    UV_PROJECT_ENVIRONMENT=/opt/dagster/app/.venv
WORKDIR /opt/dagster/app
# 1. The locked dependencies only: this layer is rebuilt only when pyproject.toml or uv.lock change.
# The `k8s` extra (dagster-k8s) lets the same image run as the Helm chart's user deployment and its run
# pods (K8sRunLauncher); compose does not need it, but one image serves both.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --extra k8s --no-install-project
# 2. The project itself (README.md is its package description, read by the build).
COPY pyproject.toml uv.lock README.md ./
COPY marketplace_assets/ marketplace_assets/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra k8s \
    && python -m compileall -q marketplace_assets

FROM ${PYTHON_IMAGE}
# A fixed, numeric, non-root user (uid and gid 10001): Kubernetes' runAsNonRoot can only verify a
# numeric USER, and an empty named volume mounted on a directory created here takes over its owner.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --no-create-home \
        --home-dir /opt/dagster/home --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/home/compute_logs /opt/dagster/data \
    && chown -R dagster:dagster /opt/dagster/home /opt/dagster/data
# The code and its environment stay owned by root: the processes can run it but not change it.
COPY --from=builder /opt/dagster/app /opt/dagster/app
COPY deploy/workspace.yaml deploy/dagster.yaml /opt/dagster/app/deploy/
# The instance: every process reads $DAGSTER_HOME/dagster.yaml (PostgreSQL from DAGSTER_POSTGRES_URL,
# step logs under DAGSTER_COMPUTE_LOGS_DIR). /opt/dagster/data is where the DuckDB warehouse volume goes.
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
ENV PATH="/opt/dagster/app/.venv/bin:${PATH}" \
    VIRTUAL_ENV=/opt/dagster/app/.venv \
    DAGSTER_HOME=/opt/dagster/home \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# `-w deploy/workspace.yaml` and the module's working directory resolve from here.
WORKDIR /opt/dagster/app
USER 10001:10001
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "marketplace_assets.definitions"]
