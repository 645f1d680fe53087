"""The one-machine cluster (``python -m mpidml.cluster``): up/down/status, MPI across its nodes,
traffic on the shaped link, shared memory inside a node.

The root-only tests bring a cluster up in a fixture and take it down in its teardown, even when
the test fails, then check nothing is left. They skip (with the reason) without root, ``ip``,
``tc``, ``nsenter`` or ``unshare``, and when a cluster they did not create is already up.
"""

import json
import os
import subprocess
import sys

import pytest

from mpidml import cluster

from mpirun import HERE, mpiexec_path, run, scaled

PROBE = os.path.join(HERE, "mpi_progs", "cluster_probe.py")
LINK = "1gbit"
MiB = 1 << 20


# --------------------------------------------------------------------------- no root needed

def test_parse_link():
    lk = cluster.parse_link("wan:100mbit,25ms")
    assert (lk.rate_bps, lk.delay_s, lk.label) == (100e6, pytest.approx(25e-3), "wan")
    lk = cluster.parse_link("10gbit,20us")
    assert (lk.rate_bps, lk.delay_s, lk.label) == (10e9, pytest.approx(20e-6), "")
    assert cluster.parse_link("1gbit").delay_s == 0
    assert cluster.parse_link("1.5gbit").rate_bps == 1.5e9
    assert abs(cluster.parse_link("1gbit").seconds_for(16 * MiB) - 0.134217728) < 1e-9
    for bad in ("fast", "10gb", "1gbit,20", "0gbit", "1gbit,5parsecs"):
        with pytest.raises(ValueError, match="--link"):
            cluster.parse_link(bad)


def test_parse_layout():
    assert cluster.parse_layout("4x1") == (4, 1)
    assert cluster.parse_layout("2x2") == (2, 2)
    for bad in ("4", "0x2", "2x0", "axb"):
        with pytest.raises(ValueError, match="layout"):
            cluster.parse_layout(bad)


# --------------------------------------------------------------------------- root

def _skip_reason() -> str | None:
    why = cluster.missing_requirements()
    if why:
        return f"mpidml.cluster {why}"
    if cluster.load_state() is not None or os.path.exists(f"/sys/class/net/{cluster.BRIDGE}"):
        return f"a cluster is already up ({cluster.STATE_DIR}); not touching one we did not create"
    return None


needs_root = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _cli(*args: str, timeout: float = 60):
    return run([sys.executable, "-m", "mpidml.cluster", *args], timeout)


def _leftovers() -> list[str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           timeout=20).stdout.split()
    left = [f"netns {x}" for x in netns if x.startswith(f"{cluster.PREFIX}-")]
    left += [f"link {x}" for x in os.listdir("/sys/class/net")
             if x.startswith(f"{cluster.PREFIX}-") or x == cluster.BRIDGE]
    if os.path.exists(cluster.STATE_DIR):
        left.append(cluster.STATE_DIR)
    return left


@pytest.fixture
def up4():
    """A 4-node cluster at LINK, removed afterwards whatever the test did."""
    default_route = _default_route()
    try:
        res = _cli("up", "-n", "4", "--link", LINK)
        assert res.returncode == 0, res.output
        yield cluster.load_state()
    finally:
        res = _cli("down")
        assert res.returncode == 0, res.output
        assert _leftovers() == []
        assert _default_route() == default_route


def _default_route() -> str:
    return run(["ip", "route", "show", "default"], 20).stdout


def _mpi(layout: str, n: int, *args: str, timeout: float = 90):
    cmd = cluster.mpiexec_command(layout, mpiexec=mpiexec_path()) + ["-n", str(n), sys.executable,
                                                                     PROBE, *args]
    res = run(cmd, timeout)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.output}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def _tx_bytes(veth: str) -> int:
    with open(f"/sys/class/net/{veth}/statistics/tx_bytes") as f:
        return int(f.read())


@needs_root
def test_up_status_down_idempotent(up4):
    st = cluster.status()
    assert st["up"] and st["bridge"] and len(st["nodes"]) == 4
    assert [n["hostname"] for n in st["nodes"]] == ["node0", "node1", "node2", "node3"]
    assert all(n["present"] and "tbf" in n["qdisc"] and "rate 1Gbit" in n["qdisc"]
               for n in st["nodes"])
    assert st["hostfiles"] == ["hosts-2x2", "hosts-4x1"]
    # the hostname is the node's, not the host's
    out = run(["nsenter", f"--uts={st['nodes'][2]['uts']}", "hostname"], 20).stdout.strip()
    assert out == "node2"
    # a second `up` is refused and leaves the first intact
    again = _cli("up")
    assert again.returncode == 1 and "already up" in again.stderr
    assert cluster.status()["nodes"][0]["present"]
    # the subnet is routed only to the bridge (the fixture checks the default route)
    ours = [r for r in run(["ip", "-4", "route", "show"], 20).stdout.splitlines()
            if r.startswith("10.213.7.")]
    assert len(ours) == 1 and f"dev {cluster.BRIDGE}" in ours[0], ours
    assert cluster.down() and _leftovers() == []
    assert cluster.down() == []                       # idempotent
    text = _cli("status").stdout
    assert "no cluster recorded" in text


@needs_root
def test_delay_without_netem_is_refused_cleanly():
    """A delay needs netem; on a kernel without it `up` says so and leaves nothing behind."""
    try:
        res = _cli("up", "-n", "2", "--link", "1gbit,100us")
        if cluster.netem_available():
            assert res.returncode == 0, res.output
            assert "netem" in run(["tc", "qdisc", "show", "dev", f"{cluster.PREFIX}-v0"], 20).stdout
        else:
            assert res.returncode == 1
            assert "no netem qdisc" in res.stderr and "CONFIG_NET_SCH_NETEM" in res.stderr
            assert _leftovers() == []
    finally:
        _cli("down")
        assert _leftovers() == []


@needs_root
def test_subnet_in_use_is_refused():
    res = _cli("up", "-n", "2", "--subnet", "127.0.0.0/24")     # overlaps lo's 127.0.0.1/8
    assert res.returncode == 1 and "overlaps 127.0.0.1/8 on lo" in res.stderr, res.output
    assert _leftovers() == []


@needs_root
def test_mpi_hostnames_and_node_split(up4):
    rows = _mpi("4x1", 4, "layout")["ranks"]
    assert sorted(r["host"] for r in rows) == ["node0", "node1", "node2", "node3"]
    assert all(r["shared_size"] == 1 and r["num_nodes"] == 4 for r in rows), rows
    # the same through the CLI a user runs
    res = _cli("mpiexec", "--layout", "2x2", "--", "-n", "4", sys.executable, PROBE, "layout", timeout=90)
    assert res.returncode == 0, res.output
    rows = json.loads(res.stdout.strip().splitlines()[-1])["ranks"]
    assert [r["host"] for r in rows] == ["node0", "node0", "node1", "node1"]
    assert all(r["shared_size"] == 2 and r["num_nodes"] == 2 for r in rows), rows
    assert [r["node_index"] for r in rows] == [0, 0, 1, 1]


@needs_root
@pytest.mark.timeout(scaled(400))
def test_traffic_crosses_the_shaped_link_and_stays_off_it_within_a_node(up4):
    """16 MiB both ways between node0 and node1 takes the link's wire time (it cannot be
    faster than the shaper: it really crossed the link) and puts >= 16 MiB on node1's veth;
    between two ranks of node0 it is far faster and the link carries (almost) nothing."""
    nbytes = 16 * MiB
    wire = cluster.parse_link(LINK).seconds_for(nbytes)           # 0.134 s at 1 Gbit/s
    lock = ["flock", "-x", "/tmp/cpu.lock"]
    base = cluster.mpiexec_command("4x1", mpiexec=mpiexec_path())

    def timed(layout_cmd):
        before = _tx_bytes(f"{cluster.PREFIX}-v1"), _tx_bytes(f"{cluster.PREFIX}-v0")
        res = run(lock + layout_cmd + ["-n", "2", sys.executable, PROBE, "sendrecv", str(nbytes), "4"],
                  300)
        assert res.returncode == 0, res.output
        moved = _tx_bytes(f"{cluster.PREFIX}-v1") - before[0], _tx_bytes(f"{cluster.PREFIX}-v0") - before[1]
        return json.loads(res.stdout.strip().splitlines()[-1]), moved

    inter, moved = timed(base)
    assert inter["ok"] and [p["host"] for p in inter["pair"]] == ["node0", "node1"]
    assert min(moved) >= 4 * nbytes, f"veths carried {moved} bytes for 4 x 16 MiB each way"
    assert 0.95 * wire <= inter["best"] <= 2.0 * wire, \
        f"16 MiB over a {LINK} link took {inter['best']:.3f} s; wire time {wire:.3f} s"

    one_node = base[:base.index("-f")] + ["-f", cluster.hostfile(1, 2)] + base[base.index("-f") + 2:]
    intra, moved = timed(one_node)
    assert intra["ok"] and [p["host"] for p in intra["pair"]] == ["node0", "node0"]
    assert max(moved) < MiB, f"ranks of one node put {moved} bytes on the links"
    assert intra["best"] < 0.5 * wire, \
        f"16 MiB between ranks of one node took {intra['best']:.3f} s (link: {inter['best']:.3f} s)"
