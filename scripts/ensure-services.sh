#!/usr/bin/env bash
# Make sure the services the tests use are up: Redis on 127.0.0.1:6379 and
# RabbitMQ on 127.0.0.1:5672. Starts them (as this kind of machine does) when
# they are not answering; waits until they do. Idempotent.
set -euo pipefail

port_open() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

wait_port() { # host port seconds name
  local deadline=$((SECONDS + $3))
  until port_open "$1" "$2"; do
    if ((SECONDS >= deadline)); then
      echo "ensure-services: $4 did not come up on $1:$2 within $3 s" >&2
      return 1
    fi
    sleep 0.5
  done
}

if ! port_open 127.0.0.1 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: starting redis-server on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  else
    echo "ensure-services: redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
  fi
fi
wait_port 127.0.0.1 6379 30 Redis

if ! port_open 127.0.0.1 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "ensure-services: starting rabbitmq-server"
    rabbitmq-server -detached || true
  else
    echo "ensure-services: rabbitmq-server is not installed (apt-get install rabbitmq-server)" >&2
    exit 1
  fi
fi
wait_port 127.0.0.1 5672 120 RabbitMQ
echo "ensure-services: Redis and RabbitMQ are up"
