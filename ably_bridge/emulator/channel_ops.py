"""Channel-scoped realtime operations of a session: ATTACH, DETACH, publish, presence.

* :func:`attach` validates the name (40010) and capability (40160 channel
  ERROR), grants modes (requested ∩ capability, RTL4l/RTL4m), resumes from a
  known ``channelSerial`` with RESUMED and replays what was missed, messages
  and presence events in serial order (RTL15b, RTN15c6), honours ``rewind``
  (HAS_BACKLOG) and sends a paged presence SYNC (RTP18, RTP19) when members exist;
* :func:`sync` answers a client's SYNC request with the presence set (RTP19);
* :func:`detach` answers DETACHED and leaves the connection's members;
* :func:`publish` handles MESSAGE, PRESENCE and ANNOTATION with ACK/NACK, mode checks
  (40165) and msgSerial de-duplication (RTN7, RTN19a);
* :func:`filter_matches` evaluates the small JMESPath subset supported for
  derived ``[filter=...]`` channels (RTS5).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import actions as p
from ably_bridge.emulator import capability as caps
from ably_bridge.emulator import codec, message_annotations, presence
from ably_bridge.emulator.errors import error
from ably_bridge.emulator.names import parse_channel_name
from ably_bridge.errors import AblyException

if TYPE_CHECKING:
    from ably_bridge.emulator.channels import Channel
    from ably_bridge.emulator.fanout import Attachment
    from ably_bridge.emulator.realtime import Session

log = logging.getLogger(__name__)

MAX_REWIND = 100
RECOGNISED_PARAMS = ("rewind", "rewindLimit", "delta", "occupancy", "echo")
# Mode names in a ``modes`` channel param (lower-case, comma-separated) and their flags.
MODE_NAMES: dict[str, int] = {
    "presence": p.MODE_PRESENCE,
    "publish": p.MODE_PUBLISH,
    "subscribe": p.MODE_SUBSCRIBE,
    "presence_subscribe": p.MODE_PRESENCE_SUBSCRIBE,
    "annotation_publish": p.MODE_ANNOTATION_PUBLISH,
    "annotation_subscribe": p.MODE_ANNOTATION_SUBSCRIBE,
    "object_subscribe": p.MODE_OBJECT_SUBSCRIBE,
    "object_publish": p.MODE_OBJECT_PUBLISH,
}


def _modes_param(value: str) -> list[str]:
    """The mode names of a ``modes`` param, in order (40003 for an unknown one)."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODE_NAMES]
    if unknown or not names:
        raise error(40003, f"invalid modes param {value[:60]!r}")
    return list(dict.fromkeys(names))


def _channel_error(session: Session, name: Any, exc: AblyException) -> None:
    """ERROR scoped to one channel: that channel FAILS, the connection stays (RTL14)."""
    session.send_pm({"action": p.ERROR, "channel": name, "error": exc.to_dict()})


def granted_modes(capability: caps.Capability, resource: str, requested: int) -> int:
    ops = caps.operations_for(capability, resource)
    grantable = 0
    for op in ops:
        grantable |= p.OPERATION_MODES.get(op, 0)
    return (requested or p.DEFAULT_MODES) & grantable


def _rewind(channel: Channel, value: str, now_ms: int) -> list[dict[str, Any]]:
    """Messages selected by a ``rewind`` param: a count or a ``Ns``/``Nm`` duration (3.5)."""
    match = re.fullmatch(r"(\d+)([sm]?)", value.strip())
    if match is None:
        raise error(40003, f"invalid rewind value {value[:20]!r}")
    amount, unit = int(match.group(1)), match.group(2)
    if not unit:
        return channel.history[-min(amount, MAX_REWIND) :] if amount else []
    cutoff = now_ms - amount * (1000 if unit == "s" else 60_000)
    recent = [m for m in channel.history if int(m.get("timestamp") or 0) >= cutoff]
    return recent[-MAX_REWIND:]


def attach(session: Session, pm: dict[str, Any]) -> None:
    conn = session.conn
    assert conn is not None
    name = pm.get("channel")
    try:
        parsed = parse_channel_name(name)
        assert isinstance(name, str)
        if not caps.operations_for(conn.creds.capability, parsed.resource):
            raise error(40160, f"channel {name!r} denied by capability")
        flags_in = pm.get("flags")
        requested = flags_in & p.ALL_MODES if isinstance(flags_in, int) else 0
        raw_params = pm.get("params")
        params = dict(parsed.params)
        if isinstance(raw_params, dict):
            params.update({str(k): str(v) for k, v in raw_params.items()})
        mode_names: list[str] | None = None
        if "modes" in params:  # RTL4m: a ``modes`` param wins over the flags
            mode_names = _modes_param(params["modes"])
            requested = 0
            for mode_name in mode_names:
                requested |= MODE_NAMES[mode_name]
        modes = granted_modes(conn.creds.capability, parsed.resource, requested)
        if mode_names is not None:
            granted = [n for n in mode_names if modes & MODE_NAMES[n]]
            params["modes"] = ",".join(granted)
        if "occupancy" in params and not caps.allows(
            conn.creds.capability, parsed.resource, "channel-metadata"
        ):
            del params["occupancy"]  # inband occupancy needs channel-metadata (3.5)
        channel = conn.creds.app.channel(parsed.base)
        now = session.state.now_ms()
        serial = pm.get("channelSerial")
        backlog: list[tuple[bool, dict[str, Any]]] = []  # (is presence, item)
        flags = modes
        continuity_error: dict[str, Any] | None = None
        if isinstance(serial, str) and serial and channel.knows_serial(serial):
            flags |= p.RESUMED  # RTL15b: continuity from the client's channelSerial
            backlog = channel.events_after(serial)
        elif isinstance(serial, str) and serial:
            # The client asked to continue but cannot: attached afresh, and told so.
            continuity_error = error(
                90003, "channel continuity lost: messages since the serial expired", 404
            ).to_dict()
        elif (
            "rewind" in params
            and name not in session.attachments
            and not (isinstance(flags_in, int) and flags_in & p.ATTACH_RESUME)
        ):  # RTL4j: an ATTACH_RESUME attach gets no rewind backlog again
            backlog = [(False, m) for m in _rewind(channel, params["rewind"], now)]
            if backlog:
                flags |= p.HAS_BACKLOG
    except AblyException as exc:
        log.info("attach to %r refused: %s", name, exc.message)
        _channel_error(session, name, exc)
        return
    from ably_bridge.emulator.fanout import Attachment
    from ably_bridge.emulator.vcdiff import DeltaStream

    members = list(channel.presence.values())
    if members and modes & p.MODE_PRESENCE_SUBSCRIBE:
        flags |= p.HAS_PRESENCE
    att = Attachment(
        session=session,
        name=name,
        base=parsed.base,
        modes=modes,
        echo=params.get("echo", "true") != "false",
        filter_expr=parsed.filter_expr,
        params=params,
        deltas=DeltaStream() if params.get("delta") == "vcdiff" else None,
        requested=requested,
    )
    session.attachments[name] = att
    session.runtime.hub.attach(channel, att)
    accepted = {k: v for k, v in params.items() if k in RECOGNISED_PARAMS or k == "modes"}
    attached: dict[str, Any] = {
        "action": p.ATTACHED,
        "channel": name,
        "flags": flags,
        "channelSerial": channel.current_serial,
        "params": accepted,
    }
    if continuity_error is not None:
        attached["error"] = continuity_error
    session.send_pm(attached)
    for is_presence, item in backlog:
        if is_presence:
            _replay_presence(session, att, item)
        else:
            _replay_message(session, att, item)
    if flags & p.HAS_PRESENCE:
        _send_sync(session, name, members, channel.current_serial)


def _replay_message(session: Session, att: Attachment, message: dict[str, Any]) -> None:
    conn = session.conn
    assert conn is not None
    if not att.modes & p.MODE_SUBSCRIBE:
        return
    if message.get("connectionId") == conn.id and not (att.echo and conn.echo):
        return
    if att.filter_expr is not None and not filter_matches(att.filter_expr, message):
        return
    # RTL18: a delta channel's replay continues the delta chain from scratch.
    sent = att.deltas.messages([message], session.fmt) if att.deltas else [message]
    session.send_pm(
        {
            "action": p.MESSAGE,
            "channel": att.name,
            "channelSerial": message["serial"],
            "timestamp": message.get("timestamp"),
            "messages": sent,
        }
    )


def _replay_presence(session: Session, att: Attachment, event: dict[str, Any]) -> None:
    """A presence event missed while the connection was away: resumed continuity covers
    presence as it covers messages (RTN15c6); own presence goes out whatever the modes
    (RTP17a), as live."""
    conn = session.conn
    assert conn is not None
    if not (att.modes & p.MODE_PRESENCE_SUBSCRIBE or event.get("connectionId") == conn.id):
        return
    session.send_pm(
        {
            "action": p.PRESENCE,
            "channel": att.name,
            "channelSerial": event["serial"],
            "timestamp": event.get("timestamp"),
            "presence": [event],
        }
    )


def _send_sync(session: Session, name: str, members: list[dict[str, Any]], sync_id: str) -> None:
    """Presence SYNC in pages; ``syncId:cursor`` with an empty cursor on the last (RTP18)."""
    config = session.state.config
    size = max(1, config.sync_page_size)
    pages = [members[i : i + size] for i in range(0, len(members), size)] or [[]]
    frames = [
        {
            "action": p.SYNC,
            "channel": name,
            "channelSerial": f"sync{sync_id}:{'' if index == len(pages) - 1 else index + 1}",
            "presence": page,
        }
        for index, page in enumerate(pages)
    ]
    interval = max(0, config.sync_page_interval_ms) / 1000.0
    if not interval:
        for frame in frames:
            session.send_pm(frame)
        return
    session.send_pm(frames[0])
    for index, frame in enumerate(frames[1:], 1):

        def later(frame: dict[str, Any] = frame) -> None:
            if not session.gone() and name in session.attachments:
                session.send_pm(frame)

        session.state.schedule(interval * index, later)


def sync(session: Session, pm: dict[str, Any]) -> None:
    """A SYNC the client asks for (RTP19): the whole presence set again, even when empty."""
    conn = session.conn
    assert conn is not None
    name = pm.get("channel")
    att = session.attachments.get(name) if isinstance(name, str) else None
    if att is None or not isinstance(name, str):
        _channel_error(session, name, error(90001, "SYNC on a channel that is not attached", 400))
        return
    channel = conn.creds.app.channel(att.base)
    _send_sync(session, name, list(channel.presence.values()), channel.current_serial)


def detach(session: Session, pm: dict[str, Any]) -> None:
    conn = session.conn
    assert conn is not None
    name = pm.get("channel")
    att = session.attachments.pop(name, None) if isinstance(name, str) else None
    if att is not None:
        channel = conn.creds.app.channels.get(att.base)
        session.runtime.hub.detach(channel, conn.id, att.name)
        if channel is not None and not any(
            a.base == att.base for a in session.attachments.values()
        ):
            presence.leave_all(session.state, conn, att.base)
    session.send_pm({"action": p.DETACHED, "channel": name})


# What a client may send on a channel: the items' field, the mode it needs, the
# capability operation it needs.
_PUBLISHED: dict[int, tuple[str, int, str]] = {
    p.MESSAGE: ("messages", p.MODE_PUBLISH, "publish"),
    p.PRESENCE: ("presence", p.MODE_PRESENCE, "presence"),
    p.ANNOTATION: ("annotations", p.MODE_ANNOTATION_PUBLISH, "annotation-publish"),
}


def publish(session: Session, pm: dict[str, Any], fmt: codec.Format) -> None:
    """MESSAGE, PRESENCE or ANNOTATION from the client, answered by one ACK or NACK (11.4)."""
    conn = session.conn
    assert conn is not None
    msg_serial = pm.get("msgSerial")
    sessions = session.state.sessions
    earlier = sessions.result(conn, msg_serial) if isinstance(msg_serial, int) else None
    if earlier is not None:
        session.send_pm(earlier)  # RTN19a: a re-sent message, ACK again
        return
    action = pm["action"]
    name = pm.get("channel")
    reply: dict[str, Any]
    try:
        field_name, needed, operation = _PUBLISHED[action]
        items = pm.get(field_name)
        if not isinstance(items, list):
            raise error(40001, f"{field_name} must be a list")
        att = session.attachments.get(name) if isinstance(name, str) else None
        session.state.resolve_channel(conn.creds, name, operation)  # 40160 before 40165
        if att is not None and not att.modes & needed:
            raise error(40165, f"channel mode not granted for {field_name} on {name!r}")
        ingested = [codec.ingest(i, fmt) if isinstance(i, dict) else i for i in items]
        serial_no = msg_serial if isinstance(msg_serial, int) else -1
        if action == p.MESSAGE:
            params = pm.get("params") if isinstance(pm.get("params"), dict) else None
            result = session.state.publish(
                conn.creds,
                str(name),
                ingested,
                conn=conn,
                msg_serial=serial_no,
                params=params,
            )
            reply = {
                "action": p.ACK,
                "msgSerial": msg_serial,
                "count": 1,
                "res": [{"serials": result.serials}],
            }
            session.state.count_stat(conn.app_id, "messages.inbound.realtime.messages.count")
        elif action == p.ANNOTATION:  # RTAN1c
            message_annotations.publish(
                session.state,
                conn.creds,
                str(name),
                ingested,
                conn=conn,
                identity=conn.client_id,
                msg_serial=serial_no,
            )
            reply = {"action": p.ACK, "msgSerial": msg_serial, "count": 1}
        else:
            presence.update(session.state, conn, str(name), ingested, serial_no)
            reply = {"action": p.ACK, "msgSerial": msg_serial, "count": 1}
    except AblyException as exc:
        log.info("NACK msgSerial %s on %r: %s (%d)", msg_serial, name, exc.message, exc.code)
        reply = {"action": p.NACK, "msgSerial": msg_serial, "count": 1, "error": exc.to_dict()}
    if isinstance(msg_serial, int):
        session.state.sessions.remember_result(conn, msg_serial, reply)
        session.send_pm(reply)


def recheck_capabilities(session: Session) -> None:
    """After AUTH: modes granted again from the new capability; channels it no longer
    covers get ERROR 40160 (RTC8a1)."""
    conn = session.conn
    assert conn is not None
    for name, att in list(session.attachments.items()):
        resource = parse_channel_name(name).resource
        if not caps.operations_for(conn.creds.capability, resource):
            session.attachments.pop(name, None)
            session.runtime.hub.detach(conn.creds.app.channels.get(att.base), conn.id, name)
            _channel_error(session, name, error(40160, f"capability for {name!r} revoked"))
        else:  # RTC8a1: an upgrade grants modes asked for before, a downgrade removes them
            att.modes = granted_modes(conn.creds.capability, resource, att.requested)


_CLAUSE = re.compile(r"\s*([A-Za-z_][\w.]*|`[^`]*`)\s*(==|!=)\s*('(?:[^'\\]|\\.)*'|`[^`]*`)\s*")


def _lookup(message: dict[str, Any], path: str) -> Any:
    value: Any = message.get("extras") if path.startswith("headers.") else message
    if path.startswith("headers."):
        value = value.get("headers") if isinstance(value, dict) else None
        path = path[len("headers.") :]
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def filter_matches(expr: str, message: dict[str, Any]) -> bool:
    """Evaluate a derived-channel filter: ``field == 'v'`` / ``!=`` joined by ``&&``/``||``.

    Supported fields are ``name``, ``clientId`` and ``headers.<key>``
    (``extras.headers``). Anything else matches nothing and is logged once.
    """
    for alternative in expr.split("||"):
        ok = True
        for clause in alternative.split("&&"):
            found = _CLAUSE.fullmatch(clause)
            if found is None:
                log.warning("unsupported filter expression %r", expr[:200])
                return False
            path, op, literal = found.groups()
            wanted: Any = literal[1:-1]
            if literal.startswith("`"):
                wanted = wanted.strip('"') if wanted.startswith('"') else wanted
            actual = _lookup(message, path)
            if (str(actual) == wanted if actual is not None else False) != (op == "=="):
                ok = False
                break
        if ok:
            return True
    return False
