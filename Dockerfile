# tollmon worker and tools: `docker build -t tollmon .`
#
# Two stages. The first compiles the hot path with mypyc (tollmon/native.py: about 1.5 times
# the events per CPU-second of plain Python); the second runs that build with neither a
# compiler nor mypy. The build is keyed by the sources and the interpreter's ABI, which both
# stages share (the same CPython 3.11), so the worker's first log line says "compiled".

FROM python:3.11 AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tollmon/ tollmon/
COPY detectors/ detectors/
COPY streams/ streams/
COPY tools/native.py tools/native.py
# The runtime environment, and beside it the compiler's (mypy, stubs, setuptools), which
# stays in this stage. Editable installs: the build is found next to the sources in /app.
RUN python -m venv /opt/tollmon \
    && /opt/tollmon/bin/pip install -e . \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install -e '.[dev]' \
    && /opt/build/bin/python tools/native.py build

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/tollmon/bin:$PATH

WORKDIR /app
COPY --from=build /opt/tollmon /opt/tollmon
COPY --from=build /app /app
COPY config/ config/
COPY dashboards/ dashboards/

RUN useradd --system --uid 10001 tollmon && mkdir -p /data && chown tollmon /data
USER tollmon

ENV TOLLMON_WEB_HOST=0.0.0.0 \
    TOLLMON_WEB_PORT=6066 \
    TOLLMON_DATA_DIR=/data \
    TOLLMON_NETWORK_FILE=/app/config/network.yaml
EXPOSE 6066
ENTRYPOINT ["tollmon"]
CMD ["worker"]
