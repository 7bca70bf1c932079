"""RESP packing of pipelined commands, in one buffer: what the Redis Streams sinks write.

This module owns :func:`pack_commands`, the encoding of a batch's script calls
as redis-py's ``Connection.pack_commands`` writes them, in one buffer, so that
``send_packed_command`` makes one ``sendall`` per batch (the ``redis.raw_pipeline``
shortcut of :mod:`ably_bridge.shortcuts`; :mod:`.redis_streams` and
:mod:`.redis_cluster` send with it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["pack_commands"]

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # (a dependency of the bridge extra; the Python packing below works without it)
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is installed with the bridge
    _hiredis_pack = None
_UTF8 = (("utf-8", "strict"), ("utf8", "strict"))


def pack_commands(
    conn: Any,
    commands: list[tuple[Any, ...]],
    hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = _hiredis_pack,
) -> list[bytes]:
    """The RESP encoding of ``commands``, as ``conn.pack_commands`` would write it,
    in one buffer (``send_packed_command`` makes one ``sendall`` per item: one
    system call per batch, not per command).

    Arguments that are ``str``, ``int`` or ``bytes`` (all the script calls
    use) are encoded here - by hiredis's ``pack_command`` (C; floats as
    ``repr``, like redis-py) when it is installed and the connection encodes
    UTF-8 strictly, else in one Python pass; a command with anything else is
    left to redis-py's packer. ``hiredis_pack=None`` takes the Python pass (tests).
    """
    encoder = conn.encoder
    encoding, errors = encoder.encoding, encoder.encoding_errors
    out: list[bytes] = []
    fast = hiredis_pack if (encoding, errors) in _UTF8 else None
    for command in commands:
        if fast is not None:
            try:
                out.append(fast(command))
                continue
            except TypeError:  # (an argument hiredis does not take: the paths below)
                pass
        parts = [b"*%d\r\n" % len(command)]
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode(encoding, errors)
            elif kind is int:
                data = b"%d" % arg
            elif kind is bytes:
                data = arg
            else:
                parts = []
                break
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        if parts:
            out.extend(parts)
        else:
            out.extend(conn.pack_commands([command]))
    return [b"".join(out)]
