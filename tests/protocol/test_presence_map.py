"""PresenceMap, SYNC and own members (UTS presence_map, presence_sync, local_presence_map)."""

from __future__ import annotations

from ably_bridge.protocol.actions import PresenceAction as PA
from ably_bridge.protocol.models import PresenceMessage
from ably_bridge.protocol.presence_map import LocalPresenceMap, PresenceMap, split_sync_cursor


def pm(
    action: PA, client: str, conn: str, mid: str | None, ts: int = 100, data: object = None
) -> PresenceMessage:
    return PresenceMessage(
        action, client_id=client, connection_id=conn, id=mid, timestamp=ts, data=data
    )


def test_rtp2d_enter_update_present_stored_as_present_emitted_as_is() -> None:
    m = PresenceMap()
    for i, action in enumerate((PA.ENTER, PA.UPDATE, PA.PRESENT)):
        event = m.put(pm(action, "a", "c1", f"c1:{i}:0"))
        assert event is not None and event.action == action
        stored = m.get("c1:a")
        assert stored is not None and stored.action == PA.PRESENT
    assert len(m.values()) == 1


def test_rtp2h1_leave_outside_sync_removes_and_emits() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "a", "c1", "c1:0:0"))
    event = m.remove(pm(PA.LEAVE, "a", "c1", "c1:1:0"))
    assert event is not None and event.action == PA.LEAVE
    assert m.get("c1:a") is None
    assert m.remove(pm(PA.LEAVE, "zz", "c1", "c1:2:0")) is None


def test_rtp2h2_leave_during_sync_is_absent_then_deleted() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "alice", "c1", "c1:0:0"))
    m.put(pm(PA.ENTER, "bob", "c2", "c2:0:0"))
    m.start_sync()
    m.put(pm(PA.PRESENT, "alice", "c1", "c1:1:0", 200))
    assert m.remove(pm(PA.LEAVE, "bob", "c2", "c2:1:0", 200)) is None
    absent = m.get("c2:bob")
    assert absent is not None and absent.action == PA.ABSENT
    assert [v.client_id for v in m.values()] == ["alice"]
    assert m.end_sync(999) == []
    assert m.get("c2:bob") is None
    assert len(m) == 1


def test_rtp2b_newness_rejects_older_messages() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "a", "c1", "c1:5:1"))
    assert m.put(pm(PA.UPDATE, "a", "c1", "c1:5:0")) is None  # same serial, lower index
    assert m.put(pm(PA.UPDATE, "a", "c1", "c1:4:9")) is None
    assert m.put(pm(PA.UPDATE, "a", "c1", "c1:5:2")) is not None
    # RTP2b1: a synthesized leave compares by timestamp; equal => incoming wins (RTP2b1a)
    assert m.remove(pm(PA.LEAVE, "a", "c1", "synthetic:0:0", ts=50)) is None
    assert m.remove(pm(PA.LEAVE, "a", "c1", "synthetic:0:0", ts=100)) is not None


def test_rtp19_residual_members_get_synthesized_leaves() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "stale", "c1", "c1:0:0", data="d"))
    m.put(pm(PA.ENTER, "kept", "c1", "c1:1:0"))
    events, ended = m.apply_sync("seq1:cur1", [pm(PA.PRESENT, "kept", "c1", "c1:1:0")], 500)
    assert (events, ended) == ([], False)
    assert m.sync_in_progress
    events, ended = m.apply_sync("seq1:", [pm(PA.PRESENT, "new", "c2", "c2:0:0")], 777)
    assert (ended, m.sync_in_progress, m.sync_complete) == (True, False, True)
    leave = [e for e in events if e.action == PA.LEAVE]
    assert [(e.client_id, e.id, e.timestamp, e.data) for e in leave] == [("stale", None, 777, "d")]
    assert {v.client_id for v in m.values()} == {"kept", "new"}


def test_rtp18a_new_sync_id_discards_the_old_sync() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "a", "c1", "c1:0:0"))
    m.apply_sync("s1:x", [], 1)
    m.put(pm(PA.ENTER, "b", "c1", "c1:1:0"))
    m.apply_sync("s2:y", [], 2)  # restarts: a and b both residual again
    events, ended = m.apply_sync("s2:", [pm(PA.PRESENT, "b", "c1", "c1:1:0")], 3)
    assert ended
    assert [e.client_id for e in events] == ["a"]


def test_rtp18c_sync_without_serial_is_complete() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "gone", "c1", "c1:0:0"))
    events, ended = m.apply_sync(None, [pm(PA.PRESENT, "b", "c2", "c2:0:0")], 9)
    assert ended
    assert [(e.action, e.client_id) for e in events] == [(PA.PRESENT, "b"), (PA.LEAVE, "gone")]


def test_stale_sync_message_still_counts_as_seen() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "alice", "c1", "c1:5:0", data="original"))
    m.start_sync()
    assert m.put(pm(PA.PRESENT, "alice", "c1", "c1:3:0", data="stale")) is None
    assert m.end_sync(1) == []
    alice = m.get("c1:alice")
    assert alice is not None and alice.data == "original"


def test_end_sync_without_start_is_noop_and_absent_ignored() -> None:
    m = PresenceMap()
    assert m.end_sync(1) == []
    assert m.apply([pm(PA.ABSENT, "a", "c1", "c1:0:0")]) == []


def test_rtp19a_leave_all_and_clear() -> None:
    m = PresenceMap()
    m.put(pm(PA.ENTER, "a", "c1", "c1:0:0"))
    m.start_sync()
    m.remove(pm(PA.LEAVE, "a", "c1", "c1:1:0"))  # ABSENT placeholder: no leave for it
    m.put(pm(PA.ENTER, "b", "c1", "c1:2:0"))
    leaves = m.leave_all(42)
    assert [(e.client_id, e.id, e.timestamp) for e in leaves] == [("b", None, 42)]
    assert len(m) == 0 and m.sync_complete and not m.sync_in_progress
    m.clear()
    assert not m.sync_complete


def test_split_sync_cursor_at_first_colon() -> None:
    assert split_sync_cursor("abc:def:ghi") == ("abc", "def:ghi")
    assert split_sync_cursor("abc:") == ("abc", "")
    assert split_sync_cursor("abc") == ("abc", "")
    assert split_sync_cursor(None) is None


def test_rtp17_local_map_keyed_by_client_id() -> None:
    local = LocalPresenceMap()
    local.apply(pm(PA.ENTER, "a", "me", "me:0:0", data=1), "me")
    local.apply(pm(PA.UPDATE, "a", "me", "me:1:0", data=2), "me")
    local.apply(pm(PA.ENTER, "other", "them", "them:0:0"), "me")  # not ours
    local.apply(pm(PA.ENTER, "x", "me", "me:2:0"), None)  # no connection yet
    local.apply(PresenceMessage(PA.ENTER, connection_id="me", id="me:3:0"), "me")  # no clientId
    entry = local.get("a")
    assert entry is not None and entry.data == 2
    assert len(local) == 1
    local.apply(pm(PA.LEAVE, "a", "me", "synthetic"), "me")  # synthesized leave ignored (RTP17b)
    assert local.get("a") is not None
    local.apply(pm(PA.ABSENT, "a", "me", "me:4:0"), "me")
    local.apply(pm(PA.LEAVE, "a", "me", "me:5:0"), "me")
    assert local.get("a") is None
    local.put(pm(PA.ENTER, "b", "me", "me:6:0"))
    local.put(PresenceMessage(PA.ENTER))
    assert [m.client_id for m in local.values()] == ["b"]
    local.remove("b")
    local.remove("nobody")
    assert len(local) == 0
    local.put(pm(PA.ENTER, "c", "me", "me:7:0"))
    local.clear()
    assert local.values() == []


def test_rtp17g_reentries_keep_id_only_for_the_same_connection() -> None:
    local = LocalPresenceMap()
    local.put(pm(PA.PRESENT, "a", "old", "old:1:0", data="x"))
    local.put(pm(PA.PRESENT, "b", "new", "new:2:0", data="y"))
    out = {m.client_id: m for m in local.reentries("new")}
    assert out["a"].id is None and out["a"].data == "x" and out["a"].action == PA.ENTER
    assert out["b"].id == "new:2:0"
    assert out["a"].connection_id is None


def test_rtp2h2a_leave_during_sync_of_a_member_not_listed_yet_is_an_absent_witness() -> None:
    # The LEAVE overtakes the SYNC page that still lists the member: its PRESENT,
    # older than the LEAVE, must not bring the member back (RTP2a).
    m = PresenceMap()
    m.start_sync("s1")
    assert m.remove(pm(PA.LEAVE, "bob", "c2", "c2:5:0", 300)) is None
    witness = m.get("c2:bob")
    assert witness is not None and witness.action == PA.ABSENT and witness.id == "c2:5:0"
    assert m.put(pm(PA.PRESENT, "bob", "c2", "c2:4:0", 200)) is None
    assert m.values() == []
    assert m.end_sync(999) == [] and len(m) == 0
    # outside a sync a LEAVE of an unknown member leaves nothing behind (RTP2h1)
    assert m.remove(pm(PA.LEAVE, "bob", "c2", "c2:6:0", 400)) is None and len(m) == 0
