#!/usr/bin/env bash
# The demo: the local stack (already started by `make demo`), one worker and
# the traffic generator in real time, with the URLs to open. Ctrl-C stops the
# worker and the generator; `make stack-down` stops the stack.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
WORKER_PORTS=${TOLLMON_WORKER_PORTS:-6066,6067}
WORKER_PORT=${TOLLMON_WEB_PORT:-${WORKER_PORTS%%,*}}
PROM_PORT=${TOLLMON_PROMETHEUS_PORT:-9090}
AM_PORT=${TOLLMON_ALERTMANAGER_PORT:-9093}
DURATION=${DEMO_DURATION_S:-86400}
mkdir -p .run

TOLLMON_WEB_PORT=$WORKER_PORT $BIN/tollmon worker > .run/demo-worker.log 2>&1 &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null || true; wait $WORKER_PID 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$WORKER_PORT/metrics" > /dev/null && break
    kill -0 $WORKER_PID 2>/dev/null || { tail -30 .run/demo-worker.log; exit 1; }
    sleep 1
done

cat <<MSG
------------------------------------------------------------------
tollmon demo is running
  worker metrics   http://127.0.0.1:$WORKER_PORT/metrics
  Prometheus       http://127.0.0.1:$PROM_PORT/graph?g0.expr=sum%20by%20(type)%20(rate(tollmon_events_total%5B1m%5D))
  Alertmanager     http://127.0.0.1:$AM_PORT/#/alerts
  worker log       .run/demo-worker.log
Grafana runs with docker-compose (see README); here, Prometheus shows the metrics.
Traffic: all plazas of config/network.yaml, surges at URC-E01 (5-25 min) and URC-W02 (30-45 min);
URC-W03's detectors count 3 % of vehicles twice (tollmon_queue_corrections_total). Ctrl-C stops.
------------------------------------------------------------------
MSG

$BIN/tollmon simulate --duration "$DURATION" --rate 700 --surge URC-E01=6@300-1500 --surge URC-W02=4@1800-2700 \
    --detector-fault URC-W03=0,0.03 --speed 1
