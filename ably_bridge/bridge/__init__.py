"""The bridge: Ably channel messages, presence and lifecycle events into Celery and Redis Streams.

Data path (see ARCHITECTURE.md, "The bridge data path")::

    realtime listener -> Envelope -> bounded queue -> router -> sink(s) -> ack -> checkpoint

Modules: :mod:`.config` (file + env, validation), :mod:`.envelope` (the
Integrations JSON shape), :mod:`.router` (pure matching), :mod:`.sinks`
(Redis Streams, Celery, memory; registered by URL scheme), :mod:`.checkpoint`,
:mod:`.dedup`, :mod:`.deadletter`, :mod:`.presence_snapshot`, :mod:`.retry`
(backoff and the bounded retry buffer) and :mod:`.dispatch` (one event through
route, sinks, dead letters and checkpoints).

The daemon (``ably-bridge run``): :mod:`.source` (the seam to Ably: a channel
source, history, directory, and an in-memory fake), :mod:`.realtime_source`
(the source over the realtime client), :mod:`.backfill` (REST history with
``untilAttach``), :mod:`.discovery` (REST channel enumeration, polled),
:mod:`.core` (the sans-I/O decisions: channel lifecycle table, start
points, positions), :mod:`.daemon` (the delivery thread that performs them,
with its parts :mod:`.daemon_channels`, :mod:`.daemon_live`,
:mod:`.daemon_backfill`, :mod:`.daemon_ops`), :mod:`.watermark` (the start
watermark), :mod:`.metrics` (Prometheus text), :mod:`.health`
(``/healthz``, ``/readyz``, ``/metrics``), :mod:`.jsonlog` (JSON log lines) and
:mod:`.app` (wiring a configuration into a running bridge).
"""
