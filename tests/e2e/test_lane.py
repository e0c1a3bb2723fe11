"""The lone-packet lane (tunnel/_lane.c, tunnel/io/lane.py) against a real TUN and real sockets.

tests/e2e/lane_probe.py runs every case inside a namespace this test creates; the other side
of each packet is the Python data path (`DataKey`), so the two are held to the same bytes.
The client runs the lane in every e2e test through a real tunnel too (test_ours_tun.py and
the interop tests); `test_client_says_it_runs_the_lane` checks that it does.
"""

from __future__ import annotations

import json

import pytest

from tests.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.native_aead]


@pytest.fixture(name="probe", scope="module")
def probe_fixture() -> dict[str, object]:
    with NetnsPair() as pair:
        done = pair.run(pair.ns_a, *pair.python_argv(), "-m", "tests.e2e.lane_probe",
                        "--name", pair.ifname("l"), timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_ordinary_datagram_is_opened_and_written_to_the_device(
        probe: dict[str, object]) -> None:
    assert probe["vnet"] == 10  # a TUN with virtio-net headers, as the driver opens it
    assert probe["empty"] == "EMPTY"
    assert probe["deliver"] == "DELIVERED"
    assert probe["delivered_payload"] == "through the lane"
    assert probe["opened_counted_by_replay"] == 1
    assert probe["v1"] == "DELIVERED"
    assert probe["v1_payload"] == "through the lane"


def test_replayed_and_tampered_datagrams_are_refused(probe: dict[str, object]) -> None:
    assert probe["replay"] == "REPLAYED"
    assert probe["tampered"] == "AUTH_FAILED"


def test_a_servers_lane_routes_and_seals_on_a_plan_only_while_it_holds(
        probe: dict[str, object]) -> None:
    # The destination's entry has a plan whose inputs are the live ones: routed, sealed and
    # sent in the one call, and the entry named for the caller's counters.
    assert probe["routed"] == "SENT"
    assert probe["routed_entry"] is True
    assert probe["routed_opened"] is True
    # Any input replaced -- a float, a rekey, a peer-id, mssfix or compression pushed, a new
    # session on the entry -- and the packet is held for the Python path, nothing sent.
    for case in ("after_float", "after_rekey", "after_peer_id", "after_mssfix", "after_comp",
                 "new_session", "no_plan", "elsewhere", "without_routes"):
        assert probe[f"routed_{case}"] == "TAKE_LONE held", case
    assert probe["routed_after_float_entry"] is None
    assert probe["routed_again"] == "SENT"  # the inputs back: the plan holds again
    assert probe["routed_bad_routes"] == "routes must be a dict or None"


def test_a_servers_lane_finds_the_client_by_peer_id_and_opens_on_its_plan_while_it_holds(
        probe: dict[str, object]) -> None:
    assert probe["peer_open"] == "DELIVERED"
    assert probe["peer_open_payload"] == "through the lane"
    # Authentication and the replay window still decide, on the plan's key.
    assert probe["peer_replay"] == "REPLAYED"
    assert probe["peer_tampered"] == "AUTH_FAILED"
    # Another address (a float), another key_id, no such peer-id, any input replaced, no
    # plan: held for the Python path, which decides.
    for case in ("float", "other_key_id", "unknown_id", "beyond_the_list", "after_address",
                 "after_rekey", "after_key_slot", "after_comp", "after_mssfix", "after_vip",
                 "new_session", "no_plan"):
        assert probe[f"peer_{case}"] == "LINK_TAKE held", case
    assert probe["peer_again"] == "DELIVERED"
    assert probe["peer_again_payload"] == "through the lane"
    assert probe["peer_bad_peers"] == "peers must be a list or None"


def test_what_is_not_the_ordinary_case_goes_to_the_python_path(
        probe: dict[str, object]) -> None:
    # A keepalive is opened (authentic, accepted) and left for the session.
    assert probe["keepalive"] == "OPENED_TAKE"
    assert probe["keepalive_left_in_block"] is True
    # Control, another sender, another key_id, two queued: read, handed over as read.
    assert probe["control"] == "LINK_TAKE"
    assert probe["control_from"] == probe["server_addr"]
    assert probe["control_size"] == 31
    assert probe["control_lone"] is True
    assert probe["other_source"] == "LINK_TAKE"
    assert probe["other_key_id"] == "LINK_TAKE"
    assert probe["two_queued"] == "LINK_TAKE"
    assert probe["two_queued_lone"] is False
    assert probe["empty_datagram"] == "MALFORMED"


def test_a_lone_device_packet_is_sealed_and_sent_to_the_peer(
        probe: dict[str, object]) -> None:
    assert probe["send"] == "SENT"
    assert probe["sent_opened"] is True  # the Python path opens what the lane sealed
    assert probe["send_pid"] == 1
    assert probe["send_v1"] == "SENT"
    assert probe["sent_v1_opened"] is True


def test_device_packets_the_lane_does_not_seal_are_handed_over(
        probe: dict[str, object]) -> None:
    assert probe["two_waiting"] == "TAKE_MORE"
    assert probe["then_lone"] == "SENT"
    assert probe["no_key"] == "TAKE_LONE"
    assert probe["syn_under_mssfix"] == "TAKE_LONE"
    # At the packet-id limit nothing is sealed (the Python path raises PacketIdExhausted).
    assert probe["pid_limit"] == "TAKE_LONE"
    assert probe["pid_limit_unchanged"] is True


def test_a_servers_lane_reads_then_seals_or_opens_for_the_client_it_was_given(
        probe: dict[str, object]) -> None:
    assert probe["server_read"] == "TAKE_LONE"  # no key of its own: read and held
    assert probe["server_held"] is True
    assert probe["server_seal_send"] == "SENT"
    assert probe["server_sent_opened"] is True
    assert probe["server_seal_unheld"] == "no device packet is held"
    assert probe["server_deliver"] == "DELIVERED"
    assert probe["server_delivered_payload"] == "through the lane"
    # From another address than the client's: untouched, for the Python path (a float).
    assert probe["server_elsewhere"] == "LINK_TAKE"
    assert probe["server_elsewhere_still_held"] is True
    # An inner source that is not the client's, or no IPv4 address to check it against:
    # opened, and the server's own checks decide.
    assert probe["server_bad_source"] == "OPENED_TAKE"
    assert probe["server_no_vip"] == "OPENED_TAKE"
    assert probe["server_replay"] == "REPLAYED"


def test_hostile_datagrams_from_the_peers_address_are_refused_and_the_lane_goes_on(
        probe: dict[str, object]) -> None:
    kinds = probe["hostile_kinds"]
    assert isinstance(kinds, dict)
    assert sum(kinds.values()) == probe["hostile_sent"]  # every one answered, none raised
    # Refused by the tag, dropped as empty, or handed to the Python path as read: never
    # opened, never written.
    assert set(kinds) <= {"AUTH_FAILED", "MALFORMED", "LINK_TAKE"}, kinds
    assert kinds["AUTH_FAILED"] > 100  # the forged and flipped data packets reached the open
    assert probe["hostile_reached_the_device"] is False
    assert probe["after_hostile"] == "DELIVERED"
    assert probe["after_hostile_payload"] == "through the lane"


def test_over_a_tso_device_a_partial_checksum_is_completed_and_a_super_packet_handed_over(
        probe: dict[str, object]) -> None:
    assert probe["tso_granted"] is True
    assert "set once" in str(probe["tso_set_twice"])
    # The kernel leaves a locally sent UDP checksum to a TSO device; the lane completes it.
    assert probe["tso_kernel_leaves_udp_partial"] is True
    assert probe["tso_udp"] == "SENT"
    assert probe["tso_udp_opened"] is True
    assert probe["tso_udp_checksum_ok"] is True
    # A TCP flight comes as one super-packet: the TSO path's, where the lane read it.
    assert probe["tso_super"] == "TAKE_SUPER"
    assert probe["tso_super_held"] is True
    assert int(str(probe["tso_super_segments"])) > 1
    assert probe["tso_segments_verify"] is True
