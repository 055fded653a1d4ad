# tollmon worker and tools: `docker build -t tollmon .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
# Dependencies first, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
COPY tollmon/ tollmon/
COPY detectors/ detectors/
COPY streams/ streams/
RUN pip install .

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
