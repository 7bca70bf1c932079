#!/usr/bin/env bash
# The sink and transport tests against the lowest versions pyproject.toml declares.
#
# Creates (or reuses) a second venv, LOWEST_VENV (default .venv-lowest), installs the
# project's runtime dependencies pinned at their lower bounds (the constraints
# scripts/lowest_constraints.py derives from pyproject.toml) plus the test runner, then
# runs the sink and transport tests twice: with the library shortcuts (the lowest
# versions are the low end of ably_bridge/shortcuts.py's table, so they are taken) and
# with every shortcut on its public path (ABLY_BRIDGE_NO_SHORTCUTS=1).
# Needs Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672 (make services).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${LOWEST_VENV:-.venv-lowest}"
TESTS=(
    tests/test_shortcuts.py
    tests/transports
    tests/bridge/sinks/test_shortcut_paths.py
    tests/emulator/test_shortcut_paths.py
    tests/bridge/sinks/test_redis_streams.py
    tests/bridge/sinks/test_celery.py
    tests/bridge/sinks/test_celery_batching.py
    tests/bridge/sinks/test_celery_template.py
    tests/bridge/sinks/test_amqp_frames.py
    # Push-once needs kombu 5.7's channel internals (celery_redis.supported()); on older
    # kombu the sink pushes as kombu does, which is what this test of it checks.
    tests/bridge/sinks/test_celery_push_once.py::test_without_the_kombu_internals_it_pushes_as_kombu_does
)
constraints="$VENV/lowest-constraints.txt"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$PYTHON" scripts/lowest_constraints.py > "$constraints"
echo "test-lowest: installing the lowest declared versions into $VENV"
# (every time: pip also puts back a version changed by hand since)
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$constraints" -e ".[bridge,emulator]" $("$PYTHON" scripts/lowest_constraints.py --runner) \
    > "$VENV/pip.log" 2>&1; then
    grep -v '^WARNING: Location' "$VENV/pip.log" >&2
    echo "test-lowest: pip could not install the lowest declared versions" >&2
    exit 1
fi
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(amqp|celery|hiredis|kombu|redis|requests|urllib3|websocket-client|aiohttp|msgpack|pycryptodome|pyyaml) ' \
    | tr -s ' ' | tr '\n' ';' | sed 's/;/; /g; s/^/test-lowest: versions: /'
echo
# The tests that start a Celery worker run one per process: before Celery 5.7, a worker
# started after another one in the same process may not consume (seen with 5.5.3 and
# 5.6.0: a countdown retry from a quorum queue never came back; under load, tasks not
# received and the worker thread not exiting). A test-harness limit of the older Celery;
# what the sink sends is checked by the other tests here, in one process.
WORKER_TESTS=(
    "tests/bridge/sinks/test_celery.py::test_worker_receives_the_envelope_once[redis]"
    "tests/bridge/sinks/test_celery.py::test_worker_receives_the_envelope_once[amqp]"
    tests/bridge/sinks/test_celery.py::test_quorum_queue_target_reaches_a_quorum_worker_that_retries
    "tests/bridge/sinks/test_celery_template.py::test_a_worker_runs_the_templated_tasks[redis]"
    "tests/bridge/sinks/test_celery_template.py::test_a_worker_runs_the_templated_tasks[amqp]"
)
run() {
    local deselect=() test
    for test in "${WORKER_TESTS[@]}"; do deselect+=(--deselect "$test"); done
    ABLY_BRIDGE_LOWEST=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" \
        "${deselect[@]}"
    for test in "${WORKER_TESTS[@]}"; do
        ABLY_BRIDGE_LOWEST=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$test"
    done
}
echo "test-lowest: with the shortcuts"
run
echo "test-lowest: every shortcut on its public path (ABLY_BRIDGE_NO_SHORTCUTS=1)"
ABLY_BRIDGE_NO_SHORTCUTS=1 run
