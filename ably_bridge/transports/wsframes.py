"""RFC 6455 section 5 framing, read side: complete messages out of a server's byte stream.

Pure parsing, no socket: :class:`FrameReader` is fed what a ``recv`` returned
and gives back ``(opcode, payload)`` pairs; :class:`FrameError` says the server
broke the framing (or a frame is over the read limit).
:mod:`~ably_bridge.transports.websocket` does the reading and the answering.
"""

from __future__ import annotations

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_CONT",
    "OPCODE_PING",
    "OPCODE_PONG",
    "OPCODE_TEXT",
    "FrameError",
    "FrameReader",
]

OPCODE_CONT = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_DATA = (OPCODE_TEXT, OPCODE_BINARY)


class FrameError(Exception):
    """The server broke the WebSocket framing (RFC 6455 section 5), or a frame is too large.

    ``frames`` holds the complete messages that came before the fault in the same feed.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames: list[tuple[int, bytes]] = []


class FrameReader:
    """Complete messages out of the byte stream a server sends, many per :meth:`feed`.

    Returns ``(opcode, payload)`` pairs: text and binary messages (fragments
    reassembled, RFC 6455 5.4) and control frames (close, ping, pong) as they
    come. ``limit`` bounds a message's size, checked as soon as a header
    announces it, so an oversized frame is refused before it is buffered.
    """

    __slots__ = ("_buffer", "_fragments", "_message_opcode")

    def __init__(self) -> None:
        self._buffer = b""  # an incomplete frame carried over to the next feed
        self._fragments: list[bytes] = []
        self._message_opcode = 0  # opcode of the fragmented message in progress

    def feed(self, chunk: bytes, limit: int | None = None) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        try:
            buf = self._buffer + chunk if self._buffer else chunk
            end = len(buf)
            pos = 0
            while end - pos >= 2:
                b1 = buf[pos]
                b2 = buf[pos + 1]
                length = b2 & 0x7F
                start = pos + 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (buf[start] << 8) | buf[start + 1]
                    start += 2
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buf[start : start + 8], "big")
                    start += 8
                if (
                    limit is not None
                    and length + (self._fragment_size() if self._fragments else 0) > limit
                ):
                    raise FrameError(
                        f"inbound frame of {length} bytes exceeds the read limit of {limit}"
                    )
                mask = b""
                if b2 & 0x80:  # servers must not mask (RFC 6455 5.1); tolerated, like before
                    mask = buf[start : start + 4]
                    start += 4
                stop = start + length
                if stop > end:
                    break
                payload = buf[start:stop]
                pos = stop
                if mask:
                    payload = _unmask(payload, mask)
                if b1 & 0x70:
                    raise FrameError("frame with reserved bits set (no extension was negotiated)")
                opcode = b1 & 0x0F
                if b1 & 0x80 and opcode in _DATA and not self._message_opcode:
                    out.append((opcode, payload))  # a whole message in one frame: the usual case
                else:
                    self._frame(opcode, bool(b1 & 0x80), payload, out)
            self._buffer = buf[pos:] if pos < end else b""
        except FrameError as exc:
            exc.frames = out  # the messages before the fault are still handed on
            raise
        return out

    def assemble(
        self, opcode: int, fin: bool, payload: bytes, limit: int | None = None
    ) -> list[tuple[int, bytes]]:
        """What one frame already parsed (by the websocket library) completes, as
        :meth:`feed` gives it: a control frame, a whole message, or nothing yet."""
        if limit is not None and len(payload) + self._fragment_size() > limit:
            raise FrameError(
                f"inbound frame of {len(payload)} bytes exceeds the read limit of {limit}"
            )
        out: list[tuple[int, bytes]] = []
        self._frame(opcode, fin, payload, out)
        return out

    def _fragment_size(self) -> int:
        return sum(len(part) for part in self._fragments)

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        if opcode >= OPCODE_CLOSE:  # control frames (RFC 6455 5.5) are never fragmented
            if not fin or len(payload) > 125:
                raise FrameError("fragmented or oversized control frame")
            out.append((opcode, payload))
        elif opcode == OPCODE_CONT:
            if not self._message_opcode:
                raise FrameError("continuation frame without a message to continue")
            self._fragments.append(payload)
            if fin:
                out.append((self._message_opcode, b"".join(self._fragments)))
                self._fragments = []
                self._message_opcode = 0
        elif opcode in (OPCODE_TEXT, OPCODE_BINARY):
            if self._message_opcode:
                raise FrameError("new message before the previous one was finished")
            if fin:
                out.append((opcode, payload))
            else:
                self._message_opcode = opcode
                self._fragments = [payload]
        else:
            raise FrameError(f"unknown opcode {opcode:#x}")


def _unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )
