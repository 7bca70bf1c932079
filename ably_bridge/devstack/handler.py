"""Your own handler in the dev stack: ``ably-bridge dev --handler my_handler:handle``.

This module owns how the dev worker finds the user's handler and what it keeps
of each call:

* :func:`load_handler` imports ``module:function`` (a module on the path the
  dev command was started from) or ``path/to/file.py:function``, with an error
  that says what was looked for and where;
* :func:`call_handler` calls it with a :class:`workers.consumers.BridgedEvent`
  and returns a :class:`HandlerResult`: what the handler printed (captured per
  thread, so two events handled at once do not mix their output), what it
  returned, or the exception it raised. The dev worker stores that result in
  the run's Redis, and the dev console prints it under the event.

A handler that raises is reported, not retried: in the dev stack a retry
would only print the same traceback again.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "ENV_HANDLER",
    "HandlerError",
    "HandlerResult",
    "call_handler",
    "check_handler",
    "load_handler",
]

ENV_HANDLER = "ABLY_DEV_HANDLER"
MAX_OUTPUT = 2000


class HandlerError(ValueError):
    """The handler spec cannot be loaded; the message says why."""


def _split(spec: str) -> tuple[str, str]:
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise HandlerError(f"--handler {spec!r}: expected MODULE:FUNCTION or FILE.py:FUNCTION")
    return module_part, attr


def check_handler(spec: str, base: Path) -> None:
    """Say early, without running the user's code, when ``spec`` cannot be found."""
    module_part, _ = _split(spec)
    if module_part.endswith(".py"):
        if not (base / module_part).is_file():
            raise HandlerError(f"--handler {spec!r}: no file {(base / module_part).resolve()}")
        return
    sys.path.insert(0, str(base))
    try:
        found = importlib.util.find_spec(module_part)
    except (ImportError, ValueError):
        found = None
    finally:
        sys.path.remove(str(base))
    if found is None:
        raise HandlerError(
            f"--handler {spec!r}: no module named {module_part!r} in {base} or on the Python path"
        )


def load_handler(spec: str, base: Path | None = None) -> Callable[[Any], Any]:
    """``module:function`` or ``file.py:function`` -> the function."""
    module_part, attr = _split(spec)
    base = base or Path.cwd()
    if module_part.endswith(".py"):
        path = (base / module_part).resolve()
        if not path.is_file():
            raise HandlerError(f"--handler {spec!r}: no file {path}")
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        if loader_spec is None or loader_spec.loader is None:
            raise HandlerError(f"--handler {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[path.stem] = module
        loader_spec.loader.exec_module(module)
    else:
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise HandlerError(
                f"--handler {spec!r}: no module named {exc.name!r} (looked in {base} and on "
                "the Python path)"
            ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise HandlerError(f"--handler {spec!r}: {module_part} has no function {attr!r}")
    return function  # type: ignore[no-any-return]


@dataclass(frozen=True)
class HandlerResult:
    """One call of the user's handler, as the dev console shows it."""

    handler: str
    output: str = ""
    returned: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PerThreadStdout(io.TextIOBase):
    """``sys.stdout`` that writes into a thread's buffer while that thread captures."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer: io.StringIO | None = getattr(self.local, "buffer", None)
        if buffer is not None:
            return buffer.write(text)
        return self.real.write(text)

    def flush(self) -> None:
        if getattr(self.local, "buffer", None) is None:
            self.real.flush()


_install_lock = threading.Lock()


def _stdout() -> _PerThreadStdout:
    with _install_lock:
        current = sys.stdout
        if not isinstance(current, _PerThreadStdout):
            current = _PerThreadStdout(current)
            sys.stdout = current
        return current


def call_handler(name: str, handler: Callable[[Any], Any], event: Any) -> HandlerResult:
    """Call ``handler(event)``, keeping what it printed, returned or raised."""
    stdout = _stdout()
    stdout.local.buffer = buffer = io.StringIO()
    returned: str | None = None
    error: str | None = None
    try:
        value = handler(event)
        returned = None if value is None else repr(value)[:MAX_OUTPUT]
    except Exception as exc:
        error = "".join(traceback.format_exception_only(exc)).strip()[:MAX_OUTPUT]
        buffer.write(traceback.format_exc())
    finally:
        stdout.local.buffer = None
    return HandlerResult(name, buffer.getvalue()[:MAX_OUTPUT], returned, error)
