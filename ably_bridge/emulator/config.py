"""Emulator settings: one frozen dataclass with every default in one place.

Durations are in milliseconds (Ably's wire unit) unless the name says
otherwise. Defaults suit development: history is kept for every channel,
Basic auth is accepted over plain HTTP on loopback, and the timings match the
values Ably advertises in ``connectionDetails`` (ably-protocol.md 2.2, 11.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """Server-wide behaviour of the emulator. Replace fields with ``dataclasses.replace``."""

    # connectionDetails advertised on CONNECTED (CD2, RTN21)
    max_message_size: int = 65536
    max_frame_size: int = 524288
    max_inbound_rate: int = 250
    max_outbound_rate: int = 100
    connection_state_ttl_ms: int = 120_000
    max_idle_interval_ms: int = 15_000
    server_id: str = "emulator.local"
    site_code: str = "local"

    # Heartbeat cadence when the client asked for ``heartbeats=true`` (RTN23b);
    # None means every ``max_idle_interval_ms``.
    heartbeat_interval_ms: int | None = None
    # Delay before a synthetic LEAVE for members of an abruptly lost connection
    # (ably-protocol.md 11.7; Ably uses about 15 s).
    presence_leave_delay_ms: int = 15_000
    # Members per SYNC ProtocolMessage when a presence set is sent on attach (RTP18).
    sync_page_size: int = 100
    # Gap between those pages: 0 sends them back to back; more lets live presence
    # frames go out in between, as they do while Ably syncs a large set (RTP2h2a).
    sync_page_interval_ms: int = 0

    # Auth (RSA9, ably-protocol.md 6.3): TokenRequest timestamps must lie within
    # this window of server time; nonces are remembered as long.
    token_request_window_ms: int = 120_000
    default_token_ttl_ms: int = 3_600_000
    max_token_ttl_ms: int = 86_400_000
    # Real Ably refuses Basic auth over plain HTTP (40103); a loopback dev server need not.
    require_tls_for_basic: bool = False

    # Comet (HTTP long-polling) transport: a recv with nothing to deliver answers 204
    # after ``comet_poll_ms``; a transport nobody polls for ``comet_idle_ms`` is lost.
    comet_poll_ms: int = 10_000
    comet_idle_ms: int = 30_000

    # Browser pages allowed besides loopback ones and the emulator's own host, as
    # origins (``https://app.example.test:8443``, or ``null``); see origin.py.
    allowed_origins: tuple[str, ...] = ()

    # History: None keeps everything (development default).
    history_ttl_ms: int | None = None
    history_max_per_channel: int | None = None
    # Client-supplied message ids remembered for idempotent publishing (RSL1k).
    idempotency_window: int = 10_000
    # A channel counts as active this long after its last publish (CHD, /channels).
    channel_active_ms: int = 120_000
    # Stats counters are kept per minute interval; False disables counting.
    stats_enabled: bool = True

    # The app created at start, in the shape of a ``POST /apps`` body (None: a default app).
    default_app: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    def heartbeat_seconds(self) -> float:
        interval = self.heartbeat_interval_ms or self.max_idle_interval_ms
        return max(interval, 1) / 1000.0
