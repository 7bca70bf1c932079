"""Channel lifecycle: the transition table of one channel's phase in the bridge.

This module owns the phases, the inputs that move a channel between them and
the effects each move asks of the driver (:mod:`ably_bridge.bridge.daemon`),
as one explicit table, :data:`TABLE`: ``(phase, input) -> rule``. A rule is a
small pure function of what the channel knows (:class:`View`) and the input;
it returns a :class:`Decision` (the next phase and the effects, in order) or
None (the input changes nothing in that phase). Nothing here touches a
socket, a thread, a clock or Redis: the driver performs the effects.

Phases::

    attaching --Attached(not resumed)--> backfilling --BackfillSucceeded--> live
        ^  ^                                  |  BackfillFailed: retry later  |
        |  +-- Suspended / Detached ----------+-------------------------------+
        |      (the client re-attaches; a fresh attach point is backfilled)
        +-- RetryDue / AttachRequested from failed or paused
    any holding phase --Overflow--> paused (detached; re-attached when sinks catch up)
    any --SourceFailed / AttachFailed--> failed (re-attach after a delay)
    any --Stopping--> stopped

An ATTACHED with RESUMED keeps continuity (RTL12, RTN15c6): nothing to read.
An ATTACHED without it (RTL4c, RTN15c7) starts a backfill to its attach
serial, unless the same attach point was already reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "PHASES",
    "TABLE",
    "AttachFailed",
    "AttachRequested",
    "Backfill",
    "BackfillFailed",
    "BackfillSucceeded",
    "CountContinuityLoss",
    "Decision",
    "Detach",
    "DropHeld",
    "Effect",
    "GoLive",
    "Input",
    "InvalidateBackfill",
    "NewAttachment",
    "Overflow",
    "RetryDue",
    "RetryLater",
    "SourceAttached",
    "SourceDetached",
    "SourceFailed",
    "SourceSuspended",
    "Stopping",
    "View",
    "decide",
]

PHASES = ("attaching", "backfilling", "live", "paused", "failed", "stopped")


# -- inputs ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AttachRequested:
    """The driver wants a fresh attachment (a new channel, a resume, a reload)."""


@dataclass(frozen=True, slots=True)
class AttachFailed:
    """The source refused the attach request."""


@dataclass(frozen=True, slots=True)
class SourceAttached:
    """ATTACHED (or UPDATE): ``resumed`` kept continuity; ``attach_serial`` (RTL10b)."""

    resumed: bool
    attach_serial: str | None = None


@dataclass(frozen=True, slots=True)
class SourceSuspended:
    """SUSPENDED: the client re-attaches by itself later (RTL13b)."""


@dataclass(frozen=True, slots=True)
class SourceDetached:
    """DETACHED while the bridge wants the channel."""


@dataclass(frozen=True, slots=True)
class SourceFailed:
    """FAILED (e.g. a capability error)."""


@dataclass(frozen=True, slots=True)
class BackfillSucceeded:
    """The gap was read (and queued ahead of the live events held meanwhile)."""


@dataclass(frozen=True, slots=True)
class BackfillFailed:
    """The gap could not be read (history or the checkpoint store failed)."""


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The channel's retry timer fired."""


@dataclass(frozen=True, slots=True)
class Overflow:
    """Too many live events held (the sinks are behind): back-pressure."""


@dataclass(frozen=True, slots=True)
class Stopping:
    """The bridge is shutting down."""


Input = (
    AttachRequested | AttachFailed | SourceAttached | SourceSuspended | SourceDetached
    | SourceFailed | BackfillSucceeded | BackfillFailed | RetryDue | Overflow | Stopping
)  # fmt: skip


# -- effects ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NewAttachment:
    """Abandon the current attachment (its events are dropped) and attach again."""


@dataclass(frozen=True, slots=True)
class Detach:
    """Ask the source to detach the channel."""


@dataclass(frozen=True, slots=True)
class DropHeld:
    """Abandon the attachment's held events (they are after the checkpoint: replayed)."""


@dataclass(frozen=True, slots=True)
class Backfill:
    """Read the gap from the checkpoints (or the start point) up to ``attach_serial``."""

    attach_serial: str | None


@dataclass(frozen=True, slots=True)
class InvalidateBackfill:
    """A backfill under way answers an attach point that is gone: ignore its result."""


@dataclass(frozen=True, slots=True)
class GoLive:
    """Deliver the held events in order, then live ones as they come."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Set the retry timer: ``kind`` reattach (a fixed delay) or backfill (backoff)."""

    kind: str


@dataclass(frozen=True, slots=True)
class CountContinuityLoss:
    """Count (and log) a loss of continuity."""


Effect = (
    NewAttachment | Detach | DropHeld | Backfill | InvalidateBackfill | GoLive | RetryLater
    | CountContinuityLoss
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class View:
    """What the lifecycle needs to know of a channel."""

    phase: str
    live_once: bool = False  # went live in the current attachment
    attach_serial: str | None = None  # the attach point being (or last) backfilled


@dataclass(frozen=True, slots=True)
class Decision:
    phase: str
    effects: tuple[Effect, ...] = ()


Rule = Callable[[View, Input], Decision | None]


# -- rules ------------------------------------------------------------------------------
def _attach(view: View, event: Input) -> Decision:
    return Decision("attaching", (NewAttachment(),))


def _attach_failed(view: View, event: Input) -> Decision:
    return Decision("failed", (RetryLater("reattach"),))


def _attached(view: View, event: Input) -> Decision | None:
    assert isinstance(event, SourceAttached)
    if event.resumed and view.phase == "live":
        return None  # continuity kept (RTL12)
    if (
        not event.resumed
        and event.attach_serial is not None
        and event.attach_serial == view.attach_serial
        and view.phase in ("backfilling", "live")
    ):
        return None  # the same attach point reported twice: nothing new to close
    if event.resumed and view.phase == "attaching" and view.live_once:
        return Decision("live", (GoLive(),))  # re-attached after SUSPENDED with continuity
    effects: tuple[Effect, ...] = (Backfill(event.attach_serial),)
    if view.live_once or view.phase == "backfilling":
        effects = (CountContinuityLoss(), *effects)
    return Decision("backfilling", effects)


def _suspended(view: View, event: Input) -> Decision:
    return Decision("attaching", (InvalidateBackfill(),))  # the client re-attaches


def _detached(view: View, event: Input) -> Decision:
    return Decision("attaching", (InvalidateBackfill(), RetryLater("reattach")))


def _failed(view: View, event: Input) -> Decision:
    return Decision("failed", (DropHeld(), RetryLater("reattach")))


def _backfilled(view: View, event: Input) -> Decision:
    return Decision("live", (GoLive(),))


def _backfill_failed(view: View, event: Input) -> Decision:
    return Decision("backfilling", (RetryLater("backfill"),))


def _backfill_again(view: View, event: Input) -> Decision:
    return Decision("backfilling", (Backfill(view.attach_serial),))


def _pause(view: View, event: Input) -> Decision:
    return Decision("paused", (DropHeld(), Detach()))


def _stop(view: View, event: Input) -> Decision:
    return Decision("stopped", (DropHeld(),))


_HOLDING = ("attaching", "backfilling", "live")  # phases that hold live events

TABLE: dict[tuple[str, type], Rule] = {}
for _phase in _HOLDING:
    TABLE.update({
        (_phase, AttachRequested): _attach,
        (_phase, AttachFailed): _attach_failed,
        (_phase, SourceAttached): _attached,
        (_phase, SourceSuspended): _suspended,
        (_phase, SourceDetached): _detached,
        (_phase, SourceFailed): _failed,
        (_phase, Overflow): _pause,
        (_phase, Stopping): _stop,
    })  # fmt: skip
TABLE.update({
    ("attaching", RetryDue): _attach,
    ("backfilling", BackfillSucceeded): _backfilled,
    ("backfilling", BackfillFailed): _backfill_failed,
    ("backfilling", RetryDue): _backfill_again,
    ("paused", AttachRequested): _attach,
    ("paused", AttachFailed): _attach_failed,
    ("paused", Stopping): _stop,
    ("failed", AttachRequested): _attach,
    ("failed", AttachFailed): _attach_failed,
    ("failed", RetryDue): _attach,
    ("failed", SourceAttached): _attached,
    ("failed", SourceFailed): _failed,
    ("failed", Stopping): _stop,
})  # fmt: skip
# Everything else - any input while stopped, a state change of a paused (detached)
# channel, a late backfill result - changes nothing.


def decide(view: View, event: Input) -> Decision | None:
    """The move ``event`` makes from ``view.phase`` (None: no change)."""
    rule = TABLE.get((view.phase, type(event)))
    return None if rule is None else rule(view, event)
