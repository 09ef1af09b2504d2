#!/usr/bin/env bash
# `make dev`: the whole stack on localhost. The local gateway (WebSocket API, @connections, the
# browser page, the push API) and the example backend service (examples/job-backend) behind
# the gateway's local bus: the app manifest's forwarded actions (wsstack.toml: submitJob) reach
# it, and it pushes each job's progress back through the push API.
#
# Environment: PORT (3001), WEB_PORT, PUSH_PORT (3003), BACKEND_PORT (3004), DEV_STAGE (dev),
# AUTH (none|dev), BACKEND=0 to run the gateway alone (events are then logged).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-3001}
PUSH_PORT=${PUSH_PORT:-3003}
BACKEND_PORT=${BACKEND_PORT:-3004}
DEV_STAGE=${DEV_STAGE:-dev}
BACKEND=${BACKEND:-1}

cargo build --profile local -p wsstack-gateway --bin wsstack-local \
  -p wsstack-example-job-backend --bin job-backend

gateway_args=(--port "$PORT" --push-port "$PUSH_PORT" --stage "$DEV_STAGE")
[ -n "${WEB_PORT:-}" ] && gateway_args+=(--web-port "$WEB_PORT")
[ -n "${AUTH:-}" ] && gateway_args+=(--auth "$AUTH")

if [ "$BACKEND" != 0 ]; then
  target/local/job-backend --listen "127.0.0.1:$BACKEND_PORT" \
    --push-api-url "http://127.0.0.1:$PUSH_PORT" &
  backend=$!
  # The backend stops with the gateway, however the gateway ends.
  trap 'kill "$backend" 2>/dev/null || true' EXIT
  gateway_args+=(--backend-url "http://127.0.0.1:$BACKEND_PORT/events")
fi

target/local/wsstack-local "${gateway_args[@]}"
