"""Outbound publishes awaiting acknowledgement: msgSerial, ACK/NACK, queueing, resend.

:class:`PublishQueue` owns every MESSAGE / PRESENCE ProtocolMessage the
connection has accepted but not yet settled:

* ``queued`` - accepted while the connection was not CONNECTED (RTL6c2); no
  msgSerial yet, sent in order on CONNECTED.
* ``inflight`` - sent, awaiting ACK/NACK, in msgSerial order (RTN7a/b).

A msgSerial is assigned when a frame is first *sent*. ACK/NACK ``{msgSerial,
count}`` settles ``serial .. serial+count-1``; in-flight serials below
``serial`` were skipped by the server and count as NACKed; already-settled
serials are ignored. On a new transport every in-flight frame is resent
(RTN19a), keeping its serial after a successful resume and renumbered from 0
after a failed one (RTN19a2, RTN15c7).

The queue emits :class:`CompletePublish` effects; it never decides *when* to
fail everything - the connection calls :meth:`fail_all` on SUSPENDED, CLOSED,
FAILED (RTN7e) and on DISCONNECTED without ``queue_messages`` (RTN7d).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ably_bridge.errors import AblyException, ErrorCode
from ably_bridge.protocol.events import CompletePublish, Handle

if TYPE_CHECKING:
    from ably_bridge.protocol.models import ProtocolMessage

__all__ = ["PendingPublish", "PublishQueue"]


class PendingPublish:
    """One outbound ProtocolMessage and the handle of the caller waiting on it."""

    __slots__ = ("frame", "handle")

    def __init__(self, frame: ProtocolMessage, handle: Handle) -> None:
        self.frame = frame
        self.handle = handle

    @property
    def serial(self) -> int | None:
        return self.frame.msg_serial

    def __repr__(self) -> str:
        return f"PendingPublish(serial={self.serial}, channel={self.frame.channel!r})"


def _skipped_error() -> AblyException:
    return AblyException(
        "message not acknowledged: the server skipped its msgSerial",
        ErrorCode.INTERNAL_ERROR,
        500,
    )


def _nack_error() -> AblyException:
    return AblyException("message rejected by Ably (NACK)", ErrorCode.INTERNAL_ERROR, 500)


class PublishQueue:
    """msgSerial bookkeeping and the connection-wide queue (RTN7, RTL6c2, RTN19a)."""

    __slots__ = ("inflight", "next_serial", "queued")

    def __init__(self, next_serial: int = 0) -> None:
        self.next_serial = next_serial
        self.queued: deque[PendingPublish] = deque()
        self.inflight: deque[PendingPublish] = deque()

    def __len__(self) -> int:
        return len(self.queued) + len(self.inflight)

    def __iter__(self) -> Iterator[PendingPublish]:
        yield from self.inflight
        yield from self.queued

    # -- accepting ------------------------------------------------------------
    def enqueue(self, entry: PendingPublish) -> None:
        """Hold ``entry`` until the connection is CONNECTED (RTL6c2)."""
        self.queued.append(entry)

    def send(self, entry: PendingPublish) -> ProtocolMessage:
        """Give ``entry`` the next msgSerial (RTN7b), track it, and return the frame to send."""
        entry.frame.msg_serial = self.next_serial
        self.next_serial += 1
        self.inflight.append(entry)
        return entry.frame

    def take_queued(self) -> list[PendingPublish]:
        """Remove and return the queued entries, oldest first (the caller sends or moves them)."""
        taken = list(self.queued)
        self.queued.clear()
        return taken

    # -- transport change (RTN19a) --------------------------------------------
    def resend_frames(self) -> list[ProtocolMessage]:
        """Frames awaiting ACK, to resend on a resumed transport with their serials (RTN19a2)."""
        return [entry.frame for entry in self.inflight]

    def renumber(self) -> list[ProtocolMessage]:
        """After a failed resume: msgSerial restarts at 0 and in-flight frames get new serials."""
        self.next_serial = 0
        entries = list(self.inflight)
        self.inflight.clear()
        return [self.send(entry) for entry in entries]

    def reset_serial(self) -> None:
        """RTN11d: a fresh connection starts again at msgSerial 0."""
        self.next_serial = 0
        for entry in self.inflight:
            entry.frame.msg_serial = None
        self.queued.extendleft(reversed(self.inflight))
        self.inflight.clear()

    # -- settling ---------------------------------------------------------------
    def ack(self, serial: int, count: int, res: Sequence[Any] | None) -> list[CompletePublish]:
        """ACK for ``serial .. serial+count-1``; ``res`` holds per-frame serials (TR4s)."""
        return self._settle(serial, count, None, res)

    def nack(self, serial: int, count: int, error: AblyException | None) -> list[CompletePublish]:
        """NACK for ``serial .. serial+count-1`` with the server's ``error``."""
        return self._settle(serial, count, error or _nack_error(), None)

    def fail_all(self, error: AblyException) -> list[CompletePublish]:
        """Fail everything queued and in flight (RTN7e, RTN7d)."""
        done = [CompletePublish(entry.handle, error) for entry in self]
        self.inflight.clear()
        self.queued.clear()
        return done

    def fail_where(self, error: AblyException, channel: str) -> list[CompletePublish]:
        """Fail the *queued* (never sent) entries of one channel."""
        keep: deque[PendingPublish] = deque()
        done: list[CompletePublish] = []
        for entry in self.queued:
            if entry.frame.channel == channel:
                done.append(CompletePublish(entry.handle, error))
            else:
                keep.append(entry)
        self.queued = keep
        return done

    def _settle(
        self,
        serial: int,
        count: int,
        error: AblyException | None,
        res: Sequence[Any] | None,
    ) -> list[CompletePublish]:
        done: list[CompletePublish] = []
        inflight = self.inflight
        end = serial + max(count, 0)
        while inflight:
            first = inflight[0].frame.msg_serial
            if first is None or first >= end:
                break
            entry = inflight.popleft()
            if first < serial:
                # Skipped by the server: implicitly NACKed (protocol.md).
                done.append(CompletePublish(entry.handle, _skipped_error()))
            elif error is not None:
                done.append(CompletePublish(entry.handle, error))
            else:
                done.append(CompletePublish(entry.handle, None, _serials_at(res, first - serial)))
        return done


def _serials_at(res: Sequence[Any] | None, index: int) -> list[str | None] | None:
    """The ``serials`` list of the ``index``-th ``res`` entry, if the server sent one (TR4s)."""
    if not res or index >= len(res):
        return None
    item = res[index]
    serials = item.get("serials") if isinstance(item, dict) else getattr(item, "serials", None)
    return list(serials) if isinstance(serials, list) else None
