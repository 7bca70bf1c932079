"""Every Redis key name the bridge and its workers use, and where each one lives.

This module owns :class:`RedisKeys`, the one place that spells a key, and the
hash-tag helpers (:func:`hash_tag`, :func:`stream_tag`) that place keys on a
Redis Cluster (issue 21). Every component asks a :class:`RedisKeys` for its
names; the Lua scripts stay beside the code that runs them, and the table
below lists the keys each one touches (a script or a MULTI may only touch keys
of one hash slot on a cluster).

On one node (``cluster=False``, any ``redis://``, ``rediss://``, ``unix://`` or
``redis+sentinel://`` URL) the names are exactly those of earlier releases, so
existing checkpoints, leases and dedup marks are kept. On a cluster
(``redis+cluster://``) keys touched together share a hash tag:

(one node -> cluster)

* route checkpoints: ``<p>:checkpoint:<route>`` -> ``{<p>}:checkpoint:<route>``
  (presence: ``<p>:presence-checkpoint:<route>``, likewise);
* start watermark: ``<p>:start-watermark`` -> ``{<p>}:start-watermark``;
* leases: ``<p>:shard:members``, ``<p>:shard:<n>:owner``, ``<p>:shard:<n>:token``
  -> the same after ``{<p>}``;
* stream dedup hash: ``<p>:dedup:<stream>:<bucket>``
  -> ``<p>:dedup:{<tag>}:<stream>:<bucket>``;
* stream fence mirror: none (the script reads the token key itself)
  -> ``<p>:fence:{<tag>}:<token key without braces>``;
* worker done mark and lock: ``<p>:task:done:<id>``, ``<p>:task:lock:<id>``
  -> ``<p>:task:done:{<id>}``, ``<p>:task:lock:{<id>}``;
* Celery push-once mark: ``<p>:celery:sent:<queue>:<id>`` (a kombu broker is
  never a cluster).

``<p>`` is ``key_prefix`` (default ``ably-bridge``) and ``<tag>`` the stream's
hash tag (:func:`stream_tag`). So on a cluster:

* the **control keys** (checkpoints, the watermark, leases and fencing tokens)
  share the tag ``{<p>}`` and live in one slot, which keeps the fenced
  checkpoint script exact: it reads the shard's token key in the same atomic
  step. They are written once per checkpoint interval, not per event;
* the **data keys** follow the stream: the streams script touches the stream,
  its two dedup buckets and, with shard leases, a *fence mirror* per shard,
  all under the stream's tag. The mirror holds the highest token that wrote to
  that slot, and a write with a lower token is refused (the token key is in
  another slot; see :mod:`.fencing`, ``FENCE_MIRROR_LUA``);
* a stream key chooses its slot with a hash tag in its template. Templates are
  Python format strings, so a literal brace is doubled: ``"ably:{{{channel}}}"``
  renders ``ably:{chat:1}`` (one slot per channel), ``"ably:{{{route}}}:{channel}"``
  puts a route's channels in one slot. A stream without a tag hashes by its
  whole name (its dedup keys use that name as their tag).

Scripts and the keys they touch (all in one slot, as above):

* ``sinks.redis_streams`` XADD+dedup: stream, 2 dedup buckets [, fence keys];
* ``checkpoint`` advance / raise watermark: route hash [, shard token]; watermark;
* ``sharding`` heartbeat / claim / renew / release: members; owners and tokens;
* ``dedup.WorkerGuard`` claim / complete / release: done mark, lock;
* ``sinks.celery_redis`` push-once: mark, queue list (the broker's Redis);
* ``presence_snapshot`` replace (MULTI): the snapshot hash.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RedisKeys",
    "hash_tag",
    "is_cluster_client",
    "keys_for",
    "same_slot",
    "slot_tag",
    "stream_tag",
]


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` as Redis Cluster reads it, or None (whole key hashed).

    The tag is what lies between the first ``{`` and the first ``}`` after it,
    when that is not empty.
    """
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def stream_tag(stream: str) -> str:
    """The tag that puts a key in ``stream``'s slot: its own tag, or its whole name.

    A name with braces but no tag (``a{}b``, ``a}b``) gets a short tag of the
    same slot (``~`` and a number: :func:`slot_tag`).
    """
    tag = hash_tag(stream)
    if tag is not None:
        return tag
    if "{" in stream or "}" in stream:
        return slot_tag(_slot(stream))
    return stream


_SLOT_TAGS: list[str] = []


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode("utf-8")))


def slot_tag(slot: int) -> str:
    """A short tag (``~<n>``) whose keys hash to ``slot`` (a table built on first use)."""
    if not _SLOT_TAGS:
        from redis.crc import key_slot

        table = [""] * 16384
        missing, n = 16384, 0
        while missing:
            tag = f"~{n}"
            s = int(key_slot(tag.encode()))
            if not table[s]:
                table[s] = tag
                missing -= 1
            n += 1
        _SLOT_TAGS.extend(table)
    return _SLOT_TAGS[slot]


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key names for one ``key_prefix``, on one node or on a cluster."""

    prefix: str = "ably-bridge"
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.prefix or "}" in self.prefix):
            raise ValueError(
                "on a Redis Cluster the bridge places the hash tags itself: "
                f"key_prefix must not contain braces ({self.prefix!r})"
            )

    @property
    def control(self) -> str:
        """The start of every control key: ``<p>``, or ``{<p>}`` on a cluster."""
        return f"{{{self.prefix}}}" if self.cluster else self.prefix

    # -- control keys: checkpoints, start watermark, leases ----------------------------
    def checkpoint(self, route: str) -> str:
        return f"{self.control}:checkpoint:{route}"

    def presence_checkpoint(self, route: str) -> str:
        return f"{self.control}:presence-checkpoint:{route}"

    def start_watermark(self) -> str:
        return f"{self.control}:start-watermark"

    def shard_members(self) -> str:
        return f"{self.control}:shard:members"

    def shard_owner(self, shard: int) -> str:
        return f"{self.control}:shard:{shard}:owner"

    def shard_token(self, shard: int) -> str:
        return f"{self.control}:shard:{shard}:token"

    # -- data keys: they follow the stream or the task ---------------------------------
    def stream_dedup(self, stream: str, bucket: int) -> str:
        """The dedup hash of ``stream`` for time bucket ``bucket``."""
        if self.cluster:
            return f"{self.prefix}:dedup:{{{stream_tag(stream)}}}:{stream}:{bucket}"
        return f"{self.prefix}:dedup:{stream}:{bucket}"

    def stream_fence(self, stream: str, token_key: str) -> str:
        """On a cluster: the mirror of ``token_key`` in ``stream``'s slot.

        On one node the streams script reads the token key itself.
        """
        if not self.cluster:
            return token_key
        plain = token_key.replace("{", "").replace("}", "")
        return f"{self.prefix}:fence:{{{stream_tag(stream)}}}:{plain}"

    def task_done(self, task_id: str) -> str:
        return f"{self.prefix}:task:done:{self._tagged(task_id)}"

    def task_lock(self, task_id: str) -> str:
        return f"{self.prefix}:task:lock:{self._tagged(task_id)}"

    def celery_sent(self, queue: str, task_id: str) -> str:
        """The push-once mark of a task on a Redis broker (kombu has no cluster broker)."""
        return f"{self.prefix}:celery:sent:{queue}:{task_id}"

    def _tagged(self, name: str) -> str:
        return f"{{{name}}}" if self.cluster else name


def is_cluster_client(client: object) -> bool:
    """Whether ``client`` is a redis-py cluster client (its keys need hash tags)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def same_slot(*keys: str) -> bool:
    """Whether ``keys`` all hash to one cluster slot (one script or MULTI may take them)."""
    return len({_slot(k) for k in keys}) <= 1


def keys_for(client: object, prefix: str) -> RedisKeys:
    """The key names for ``prefix`` on the Redis that ``client`` talks to."""
    return RedisKeys(prefix, cluster=is_cluster_client(client))
