# syntax=docker/dockerfile:1.7
#
# One image for every Tandem process; the command picks the process (see docker-compose.yml and k8s/).
#
# Why one image and not one per service: ingest, mapper, writer and console share ~95% of their dependencies
# (tandem_shared, FastStream/aiokafka, pydantic, uvicorn) and, more importantly, the message contracts in
# tandem_shared. One image means one build, one scan and one tag to promote, and every stage of a release runs
# the same contract version — a mapper and a writer built from different commits cannot meet in production.
# The cost is a few MB of FastAPI in the mapper's image, shared as a layer anyway.
#
# Two final targets:
#   runtime (default)  ingest, mapper, writer, console and the `tandem` operator CLI — what production runs.
#   dev                runtime plus the vendor simulators and devstack (the topic-creation and demo-webhook
#                      steps of docker compose); test doubles never ship in the production image.
#
# Build:  docker build --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt -t tandem .
#         (add --target dev -t tandem-dev for the dev target; `make image-test` builds both with podman/buildah)
#
# Every third-party package comes from requirements-image.lock (`make lock`), each file checked against its hash;
# the project's packages are then installed without dependencies, and `pip check` proves the lock covers them.

# The base is pinned by digest. Where no registry can be reached, a locally built Debian bookworm with Python 3.11
# is passed in here instead (scripts/image-test: --build-arg PYTHON_IMAGE=…). Where the digest comes from, and how far
# it could be checked without a registry: docs/operations.md, "The base image".
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS base
# No .pyc writes at run time: the root filesystem is read-only in Kubernetes; pip compiles them at install.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# Build stage: packages are installed (not editable) into a virtualenv that the final stages copy whole,
# so no compiler, pip cache or source tree reaches them.
FROM base AS build
WORKDIR /src
RUN python -m venv /opt/tandem
COPY requirements-image.lock ./
# The builder's CA certificates (which may include a TLS-inspecting proxy's) come in as a build secret: pip trusts
# them during this step and they never reach a layer. Without the secret, pip uses its own bundle.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && /opt/tandem/bin/pip install --require-hashes -r requirements-image.lock
COPY shared/ shared/
COPY services/ services/
COPY cli/ cli/
RUN /opt/tandem/bin/pip install --no-deps --no-build-isolation \
        ./shared \
        ./services/ingest \
        ./services/mapper \
        ./services/writer \
        ./services/console \
        ./cli \
 && /opt/tandem/bin/pip check

# What the runtime image gets: the virtualenv without the installers (pip and setuptools, 24 MB), which nothing
# runs in production.
FROM build AS build-runtime
RUN /opt/tandem/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM build AS build-dev
COPY simulators/ simulators/
COPY devstack/ devstack/
RUN /opt/tandem/bin/pip install --no-deps --no-build-isolation \
        ./simulators/mailchimp \
        ./simulators/accessplanit \
        ./devstack \
 && /opt/tandem/bin/pip check

FROM base AS final-base
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and the manifests'
# runAsUser/fsGroup (k8s/base) match it. State lives in volumes under /var/lib/tandem; creating the mount
# points here gives docker compose's named volumes the right owner (Docker copies it from the image).
RUN groupadd --system --gid 10001 tandem \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tandem \
 && install -d -o 10001 -g 10001 /var/lib/tandem /var/lib/tandem/console /var/lib/tandem/console-access \
    /var/lib/tandem/demo-secrets
ENV PATH=/opt/tandem/bin:$PATH
WORKDIR /var/lib/tandem
# Ports: ingest 8000, mapper 8001, writer 8002 (health), console 8080; simulators 8101/8102 (dev target).
EXPOSE 8000 8001 8002 8080

FROM final-base AS dev
COPY --from=build-dev /opt/tandem /opt/tandem
RUN install -d -o 10001 -g 10001 /var/lib/tandem/mailchimp-sim /var/lib/tandem/accessplanit-sim
EXPOSE 8101 8102
USER 10001:10001
CMD ["tandem", "--help"]

# Last stage, so a plain `docker build .` produces the production image.
FROM final-base AS runtime
COPY --from=build-runtime /opt/tandem /opt/tandem
USER 10001:10001
# No default service: every deployment names its process. Without one, the image is the operator toolbox.
CMD ["tandem", "--help"]
