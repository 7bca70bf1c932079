"""Channel metadata: ChannelDetails, ``[meta]channel.lifecycle`` and inband occupancy.

* :func:`channel_details` renders ChannelDetails with occupancy metrics
  (CHD, CHS, CHO, CHM) for REST and for the events below;
* :class:`MetaEvents` watches realtime attachments (the hub calls it on every
  attach and detach) and presence changes. The first attachment to a channel
  opens it and the last one leaving closes it: ``channel.opened`` /
  ``channel.closed`` messages carrying ChannelDetails are published on the
  app's ``[meta]channel.lifecycle`` channel (subscribing needs a capability
  on that resource, e.g. ``[meta]*`` or ``[*]*``). Attachments made with the
  ``occupancy=metrics`` channel param (and ``channel-metadata`` capability)
  receive ``[meta]occupancy`` messages with ``{"metrics": ...}`` after attach
  and whenever the metrics change, coalesced to one per loop iteration.

Activity is counted from realtime attachments only: a REST publish does not
open a channel here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ably_bridge.emulator import actions as p
from ably_bridge.emulator import codec
from ably_bridge.emulator.names import parse_channel_name

if TYPE_CHECKING:
    from ably_bridge.emulator.apps import App
    from ably_bridge.emulator.channels import Channel
    from ably_bridge.emulator.fanout import Attachment
    from ably_bridge.emulator.state import EmulatorState

log = logging.getLogger(__name__)

LIFECYCLE_CHANNEL = "[meta]channel.lifecycle"
OCCUPANCY_EVENT = "[meta]occupancy"
_METRICS = (
    "connections",
    "presenceConnections",
    "presenceMembers",
    "presenceSubscribers",
    "publishers",
    "subscribers",
    "objectPublishers",
    "objectSubscribers",
)


def occupancy_metrics(channel: Channel | None) -> dict[str, int]:
    """Occupancy metrics of a channel from its attachments' modes and members (CHM)."""
    metrics = dict.fromkeys(_METRICS, 0)
    if channel is None:
        return metrics
    modes = [getattr(att, "modes", 0) for att in channel.attachments.values()]
    metrics["connections"] = len({conn for conn, _ in channel.attachments})
    metrics["publishers"] = sum(1 for m in modes if m & p.MODE_PUBLISH)
    metrics["subscribers"] = sum(1 for m in modes if m & p.MODE_SUBSCRIBE)
    metrics["presenceConnections"] = sum(1 for m in modes if m & p.MODE_PRESENCE)
    metrics["presenceSubscribers"] = sum(1 for m in modes if m & p.MODE_PRESENCE_SUBSCRIBE)
    metrics["objectPublishers"] = sum(1 for m in modes if m & p.MODE_OBJECT_PUBLISH)
    metrics["objectSubscribers"] = sum(1 for m in modes if m & p.MODE_OBJECT_SUBSCRIBE)
    metrics["presenceMembers"] = len(channel.presence)
    return metrics


def channel_details(
    state: EmulatorState, app: App, name: str, active: bool | None = None
) -> dict[str, Any]:
    """ChannelDetails of ``name`` (CHD): ``channelId``, ``status.isActive``, occupancy."""
    channel = app.channels.get(parse_channel_name(name).base)
    if active is None:
        active = False
        if channel is not None:
            recent = state.now_ms() - channel.last_activity_ms
            active = bool(
                channel.attachments or channel.presence or recent <= state.config.channel_active_ms
            )
    return {
        "channelId": name,
        "name": name,
        "status": {"isActive": active, "occupancy": {"metrics": occupancy_metrics(channel)}},
    }


class MetaEvents:
    """Lifecycle and occupancy events of one emulator, driven by the hub."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._dirty: dict[int, Channel] = {}
        self._scheduled = False

    # -- hooks called by the hub -------------------------------------------------
    def attached(self, channel: Channel, att: Attachment, first: bool) -> None:
        if first:
            self._lifecycle(channel, "channel.opened", active=True)
        self.occupancy_changed(channel)

    def detached(self, channel: Channel, last: bool) -> None:
        if last:
            self._lifecycle(channel, "channel.closed", active=False)
        self.occupancy_changed(channel)

    def occupancy_changed(self, channel: Channel) -> None:
        if not any(_wants_occupancy(att) for att in channel.attachments.values()):
            return
        self._dirty[id(channel)] = channel
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send_occupancy)

    # -- events ----------------------------------------------------------------
    def _lifecycle(self, channel: Channel, event: str, active: bool) -> None:
        if channel.name.startswith("[meta]"):
            return  # metachannels have no lifecycle events of their own
        app = self.state.apps.get(channel.app_id)
        if app is None:
            return
        details = channel_details(self.state, app, channel.name, active)
        data = codec.encode(details, "json")  # as an SDK publishes an object (RSL4d3)
        self.state.publish_system(
            app, LIFECYCLE_CHANNEL, [{"name": event, "data": data, "encoding": "json"}]
        )

    def _send_occupancy(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, {}
        now = self.state.now_ms()
        for channel in dirty.values():
            data = codec.encode({"metrics": occupancy_metrics(channel)}, "json")
            message = {"name": OCCUPANCY_EVENT, "data": data, "encoding": "json", "timestamp": now}
            for att in list(channel.attachments.values()):
                if _wants_occupancy(att):
                    message_id = f"occupancy{channel.counter}:{now}:0"
                    att.session.send_pm(
                        {
                            "action": p.MESSAGE,
                            "channel": att.name,
                            "timestamp": now,
                            "messages": [{**message, "id": message_id}],
                        }
                    )


def _wants_occupancy(att: Any) -> bool:
    return str(getattr(att, "params", {}).get("occupancy", "")).startswith("metrics")
