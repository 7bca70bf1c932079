"""Channel modes requested with a ``modes`` param come back granted in ATTACHED (RTL4m)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .conftest import RT

PRESENCE, PUBLISH, SUBSCRIBE, PRESENCE_SUBSCRIBE = 1 << 16, 1 << 17, 1 << 18, 1 << 19
ALL_FOUR = PRESENCE | PUBLISH | SUBSCRIBE | PRESENCE_SUBSCRIBE


def test_modes_param_wins_over_flags(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key)
    rt.connected()
    attached = rt.attach(
        "modes-a", flags=PUBLISH | PRESENCE_SUBSCRIBE, params={"modes": "presence,subscribe"}
    )
    assert attached["params"] == {"modes": "presence,subscribe"}
    assert attached["flags"] & ALL_FOUR == PRESENCE | SUBSCRIBE
    nack = rt.publish("modes-a", [{"data": "x"}])
    assert nack["action"] == 2 and nack["error"]["code"] == 40165


def test_modes_param_with_other_params(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key)
    rt.connected()
    attached = rt.attach("modes-b", params={"modes": "subscribe", "delta": "vcdiff"})
    assert attached["params"] == {"modes": "subscribe", "delta": "vcdiff"}
    assert attached["flags"] & ALL_FOUR == SUBSCRIBE


def test_modes_param_narrowed_by_capability(
    app: dict[str, Any], rt_factory: Callable[..., RT], fmt: str
) -> None:
    limited = app["keys"][3]["keyStr"]  # {"*":["subscribe"]}
    rt = rt_factory(fmt, key=limited)
    rt.connected()
    attached = rt.attach("modes-c", params={"modes": "publish,subscribe,presence"})
    assert attached["params"]["modes"] == "subscribe"
    assert attached["flags"] & ALL_FOUR == SUBSCRIBE


def test_without_modes_param_no_modes_echoed(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key)
    rt.connected()
    attached = rt.attach("modes-d", flags=SUBSCRIBE, params={"delta": "vcdiff"})
    assert attached["params"] == {"delta": "vcdiff"}


def test_unknown_mode_is_a_channel_error(
    rt_factory: Callable[..., RT], root_key: str, fmt: str
) -> None:
    rt = rt_factory(fmt, key=root_key)
    rt.connected()
    rt.send({"action": 10, "channel": "modes-e", "params": {"modes": "subscribe,fly"}})
    assert rt.expect(9, channel="modes-e")["error"]["code"] == 40003
    rt.send({"action": 0, "id": "alive"})
    assert rt.expect(0, id="alive")
