"""Encoding envelopes: one bridged event in the JSON shape of Ably's hosted integrations.

This module owns :class:`Envelope` (the bridge's side;
:mod:`ably_bridge.envelope.decode` reads what it writes, and
:mod:`ably_bridge.envelope.build` makes them from messages), its
serialisations and the compact JSON encoder :func:`dumps`. An envelope
serialises (:meth:`Envelope.to_dict` / :meth:`Envelope.to_json`) to the
enveloped form that Ably Queues, Firehose and webhooks deliver, so a consumer
written for those reads it unchanged::

    {"source": "channel.message", "appId": "...", "channel": "...", "site": "...",
     "ruleId": "<route id>", "timestamp": 1700000000000,
     "messages": [{"id": ..., "name": ..., "clientId": ..., "connectionId": ...,
                   "timestamp": ..., "data": ..., "encoding": ..., "extras": ...}]}

``source`` is ``channel.message`` (``messages``), ``channel.presence``
(``presence``; ``action`` is the wire integer) or ``channel.lifecycle`` (``name``
such as ``channel.attached`` plus ``data`` describing the state change). Each
envelope carries exactly one event, as Ably's queue envelopes do today. A
message also carries what Ably sends of it: ``serial`` (TM2r), ``action`` (the
TM5 wire number: 0 create, 1 update, 2 delete, 4 summary, 5 append),
``version`` (TM2s) and ``annotations`` (TM2u); each update, delete, append and
summary of a message is an envelope of its own. Bridge metadata (route id, the
event id used for de-duplication, serial) lives on the object, outside the
Integrations JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ably_bridge.encoding.payload import append_encoding
from ably_bridge.envelope.shape import ITEMS_KEY, SOURCE_LIFECYCLE, SOURCE_MESSAGE, SOURCE_PRESENCE

__all__ = ["ITEMS_JSON_KEY", "Envelope", "dumps", "envelope_json", "json_head", "json_string"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_dumps() -> Callable[[Any], str]:
    """``_ENCODER.encode``, with the C encoder made once rather than on every call.

    ``JSONEncoder.encode`` builds its C encoder (and a dict for detecting
    cycles) per call, which is most of the cost for an event-sized object.
    Envelopes come from decoded frames, which cannot hold cycles; a cyclic
    value given anyway ends in ``RecursionError`` instead of ``ValueError``.
    """
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:  # (no C accelerator: this Python's own encoder)
        return _ENCODER.encode
    encode = make(
        None, _not_serializable, json.encoder.encode_basestring,
        None, ":", ",", False, False, False,
    )  # fmt: skip

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


dumps = _compact_dumps()
# A string's JSON text as ``dumps`` writes it (quoted, escaped, non-ASCII kept).
json_string: Callable[[str], str] = json.encoder.encode_basestring


@dataclass(slots=True, eq=False)
class Envelope:
    """One event, ready for every target of one route.

    ``item`` is the wire-form message, presence message or lifecycle body;
    ``event_id`` is the de-duplication id (message or presence ``id``; for a
    message operation, :func:`~.shape.message_event_id`); ``serial`` is the
    event's channel position (a message's ``serial``, an operation's
    ``version.serial``).
    """

    source: str
    app_id: str
    channel: str
    site: str
    rule_id: str
    timestamp: int
    item: dict[str, Any]
    event_id: str
    name: str | None = None
    serial: str | None = None
    _json: str | None = field(default=None, repr=False)
    _dedup: str | None = field(default=None, repr=False)
    _route_key: str | None = field(default=None, repr=False)

    @property
    def dedup_key(self) -> str:
        """Source-qualified id: ``m:<id>`` (``m:<id>@<version serial>`` for an update,
        delete or append), ``p:<id>`` or ``l:<id>`` (made once: it is
        read for the dedup window, the sinks' marks and the Celery task id)."""
        key = self._dedup
        if key is None:
            key = self._dedup = f"{self.source[8]}:{self.event_id}"
        return key

    @property
    def route_key(self) -> str:
        """``<route id>|<dedup key>``: the event on its route (made once: the key of the
        bridge's in-memory dedup window and the mark of the Redis Streams sink)."""
        key = self._route_key
        if key is None:
            key = self._route_key = f"{self.rule_id}|{self.dedup_key}"
        return key

    @property
    def short_source(self) -> str:
        """``message``, ``presence`` or ``lifecycle``."""
        return self.source[8:]

    def to_dict(self) -> dict[str, Any]:
        """The Integrations envelope as a dict (a fresh one on each call)."""
        out: dict[str, Any] = {
            "source": self.source,
            "appId": self.app_id,
            "channel": self.channel,
            "site": self.site,
            "ruleId": self.rule_id,
            "timestamp": self.timestamp,
        }
        if self.source == SOURCE_MESSAGE:
            out["messages"] = [dict(self.item)]
        elif self.source == SOURCE_PRESENCE:
            out["presence"] = [dict(self.item)]
        else:
            out["name"] = self.name
            out["data"] = dict(self.item)
        return out

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`, computed once.

        Messages and presence: the constant head (source .. ruleId) is encoded
        once per (source, app, channel, site, route) and only the event is
        encoded per call (:func:`envelope_json`); the text is the same as
        ``dumps(self.to_dict())``. The builder hands the text over made (it
        writes the event's JSON as it fills in ``item``).
        """
        if self._json is None:
            if self.source == SOURCE_LIFECYCLE:
                self._json = dumps(self.to_dict())
            else:
                self._json = envelope_json(
                    self.source, self.app_id, self.channel, self.site, self.rule_id,
                    self.timestamp, dumps(self.item),
                )  # fmt: skip
        return self._json

    def size(self) -> int:
        """Size in bytes of the JSON form (UTF-8)."""
        text = self.to_json()
        return len(text) if text.isascii() else len(text.encode("utf-8"))

    def flat_fields(self) -> dict[str, str]:
        """Envelope and event fields as strings, for a flat Redis Stream entry.

        Structured values (``extras``, lifecycle ``data``, JSON ``data``) are JSON
        text; JSON ``data`` gets ``json`` appended to its ``encoding``.
        """
        out = {
            "source": self.source,
            "appId": self.app_id,
            "channel": self.channel,
            "site": self.site,
            "ruleId": self.rule_id,
            "timestamp": str(self.timestamp),
        }
        if self.source == SOURCE_LIFECYCLE:
            out["name"] = self.name or ""
            out["data"] = dumps(self.item)
            return out
        encoding = self.item.get("encoding")
        for key, value in self.item.items():
            if key == "timestamp" or key == "encoding":
                continue
            if key == "data" and not isinstance(value, str):
                out["data"] = dumps(value)
                encoding = append_encoding(encoding, "json")
            elif isinstance(value, str):
                out[key] = value
            elif isinstance(value, (dict, list)):
                out[key] = dumps(value)
            else:
                out[key] = str(value)
        if encoding:
            out["encoding"] = encoding
        return out


ITEMS_JSON_KEY = {source: f'"{key}":' for source, key in ITEMS_KEY.items()}


@lru_cache(maxsize=8192)
def json_head(source: str, app_id: str, channel: str, site: str, rule_id: str) -> str:
    """``{"source":..,"appId":..,"channel":..,"site":..,"ruleId":..,"timestamp":``."""
    head = dumps(
        {"source": source, "appId": app_id, "channel": channel, "site": site, "ruleId": rule_id}
    )
    return head[:-1] + ',"timestamp":'


def envelope_json(
    source: str, app_id: str, channel: str, site: str, rule_id: str, timestamp: int, item: str
) -> str:
    """A message or presence envelope's JSON around its event's JSON text ``item``
    (the constant head is encoded once per source, app, channel, site and route)."""
    head = json_head(source, app_id, channel, site, rule_id)
    return f"{head}{timestamp},{ITEMS_JSON_KEY[source]}[{item}]}}"
