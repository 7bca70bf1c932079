"""The bridge: Ably channel messages, presence and lifecycle events into Celery and Redis Streams.

Data path (see ARCHITECTURE.md, "The bridge data path")::

    realtime listener -> Envelope -> bounded queue -> router -> sink(s) -> ack -> checkpoint

Modules: :mod:`.config` (file + env, validation), :mod:`.envelope` (the
Integrations JSON shape), :mod:`.router` (pure matching), :mod:`.sinks`
(Redis Streams, Celery, memory; registered by URL scheme), :mod:`.checkpoint`,
:mod:`.dedup`, :mod:`.deadletter`, :mod:`.presence_snapshot`, :mod:`.retry`
(backoff and the bounded retry buffer) and :mod:`.dispatch` (one event through
route, sinks, dead letters and checkpoints).
"""
