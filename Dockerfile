# tabletopic: Kafka topics into Apache Iceberg tables, exactly once.
#   docker build -t tabletopic:0.1.0 .
#   docker run --rm -v $PWD/config.yaml:/etc/tabletopic/config.yaml:ro -p 8080:8080 tabletopic:0.1.0
# Both stages use the same base, so the virtualenv's interpreter path holds in the second.
# Pin the base by digest for reproducible builds: --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Every third-party file is checked against the hashes in the locks (`make lock` writes them):
# the dependencies first (a layer that changes only with the lock), then the build backend.
COPY requirements/image.lock requirements/build.lock ./requirements/
RUN python -m venv /opt/tabletopic \
 && /opt/tabletopic/bin/pip install --require-hashes --no-deps -r requirements/image.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY tabletopic ./tabletopic
# The project itself, with no dependency resolution: the wheel leaves out tabletopic/local (the local
# services and their downloaders); pip check fails the build if the lock misses a dependency.
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
 && /opt/tabletopic/bin/pip install --no-deps /wheels/tabletopic-*.whl \
 && /opt/tabletopic/bin/pip check

FROM ${PYTHON_IMAGE}
# A named user for uid 10001 (the chart runs as it too); its home is the writable /tmp.
RUN groupadd --gid 10001 tabletopic \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tabletopic
COPY --from=build /opt/tabletopic /opt/tabletopic
ENV PATH=/opt/tabletopic/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# /healthz, /readyz and /metrics (config http.port)
EXPOSE 8080
ENTRYPOINT ["tabletopic"]
CMD ["run", "--config", "/etc/tabletopic/config.yaml"]
