"""The bridge's sans-I/O core: decisions about channels, positions and deliveries.

Nothing in this package opens a socket, starts a thread, reads a clock or talks
to Redis: callers pass the time and the facts in, and get decisions back. The
daemon (:mod:`ably_bridge.bridge.daemon`) is the driver that performs them.

* :mod:`.lifecycle` - a channel's phases as one transition table: inputs in
  (source state changes, backfill outcomes, timers, back-pressure), the next
  phase and the effects out (attach, detach, backfill to X, go live, retry).
* :mod:`.backfill_plan` - where a gap starts (the oldest checkpoint of the
  channel's tracks, or its start point) and which tracks are seeded first.
* :mod:`.start_points` - where a channel's delivery starts when no checkpoint
  says so, fixed once when the channel is first seen.
* :mod:`.ledger` - the delivery ledger: per checkpoint track and channel,
  which events every target settled and how far a checkpoint may move.
* :mod:`.shards` - shard math: a channel's shard, fair shares, preference.
* :mod:`.position` - positions (what a checkpoint holds) and checkpoint tracks
  (a route's messages, and its presence events apart).
"""
