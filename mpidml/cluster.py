"""``python -m mpidml.cluster up|down|status|hostfile|mpiexec``: a small cluster on one machine.

Each "node" is a Linux network namespace (``ip netns``) plus its own UTS namespace (its own
hostname, ``node0`` ...), joined to the host by a veth pair on one bridge (``br-mpidml``).
Addresses come from one private /24 (default 10.213.7.0/24) that exists only on those veths
and the bridge: nodes get .1 .. .N, the bridge .254 (hydra's proxies call ``mpiexec`` back
there). Nothing else is routed; the host's other interfaces and default route are untouched.

Links are shaped in both directions (the node's ``eth0`` egress and the host-side veth
egress) from ``--link [LABEL:]RATE[,DELAY]`` (``10gbit,20us``, ``1gbit``, ``wan:100mbit,25ms``):
the rate by ``tbf`` on both sides, so node to node runs at RATE; DELAY is the one-way node to
node latency, half of it added by a ``netem`` child qdisc on each side. A kernel without
``sch_netem`` (``CONFIG_NET_SCH_NETEM`` unset) cannot add delay: ``up`` then refuses a DELAY
with that error and leaves nothing behind; a rate-only link still works.

MPI across nodes: hydra's ``mpiexec -launcher ssh -launcher-exec STATE_DIR/launch.sh -iface
br-mpidml -f STATE_DIR/hosts-NxK``; ``launch.sh`` takes the node (address or hostname) where
ssh takes a host and runs the proxy under ``nsenter`` in that node's namespaces. Between
nodes UCX is told to use TCP on ``eth0`` (``UCX_TLS=tcp``): left alone, UCX sees one machine
and would move inter-"node" messages through shared memory, never touching the shaped link.
Ranks of one node still use MPICH's shared memory. ``python -m mpidml.cluster mpiexec
--layout 2x2 -- -n 4 python prog.py`` assembles that command.

State (what ``up`` created) lives in ``STATE_DIR/STATE.json`` (``/run/mpidml-cluster``),
written before each resource is created, so ``down`` removes exactly that, idempotently.
Needs root, ``ip``, ``tc``, ``nsenter`` and ``unshare``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass

__all__ = ["Link", "parse_link", "parse_layout", "up", "down", "status", "hostfile",
           "mpiexec_command", "node_names", "STATE_DIR", "ClusterError", "main"]

STATE_DIR = os.environ.get("MPIDML_CLUSTER_DIR", "/run/mpidml-cluster")
PREFIX = "mpidml"
BRIDGE = "br-mpidml"
DEFAULT_SUBNET = "10.213.7.0/24"
NODE_IF = "eth0"                     # the node's end of its veth, inside its namespace
TOOLS = ("ip", "tc", "nsenter", "unshare")
CMD_TIMEOUT = 20.0                   # seconds for any one ip/tc/unshare call
# UCX on one machine would use shared memory between namespaces (same boot id); force TCP.
MPI_ENV = {"UCX_TLS": "tcp", "UCX_NET_DEVICES": NODE_IF, "FI_PROVIDER": "tcp"}


class ClusterError(RuntimeError):
    """A cluster command failed; the message names the command and its output."""


# --------------------------------------------------------------------------- links

_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
_TIME_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0}


@dataclass(frozen=True)
class Link:
    """A shaped link: ``rate_bps`` bits/s, ``delay_s`` one-way node-to-node latency."""
    rate_bps: float
    delay_s: float = 0.0
    label: str = ""
    spec: str = ""

    def seconds_for(self, nbytes: int) -> float:
        """Wire time of ``nbytes`` of payload at the link rate (headers not counted)."""
        return nbytes * 8 / self.rate_bps + self.delay_s


def _number_unit(text: str, units: dict, what: str, spec: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]+)\s*", text)
    if not m or m.group(2).lower() not in units:
        raise ValueError(f"--link {spec!r}: {what} {text!r} must be a number with a unit "
                         f"({', '.join(units)})")
    return float(m.group(1)) * units[m.group(2).lower()]


def parse_link(spec: str) -> Link:
    """``"[LABEL:]RATE[,DELAY]"`` → :class:`Link`; e.g. ``"wan:100mbit,25ms"``, ``"1gbit"``."""
    label, _, body = spec.rpartition(":")
    rate_text, _, delay_text = body.partition(",")
    rate = _number_unit(rate_text, _RATE_UNITS, "rate", spec)
    delay = _number_unit(delay_text, _TIME_UNITS, "delay", spec) if delay_text.strip() else 0.0
    if rate <= 0:
        raise ValueError(f"--link {spec!r}: rate must be > 0")
    return Link(rate_bps=rate, delay_s=delay, label=label, spec=spec)


def parse_layout(text: str) -> tuple[int, int]:
    """``"2x2"`` → (nodes, ranks per node)."""
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"layout {text!r} must be NODESxRANKS_PER_NODE, e.g. 4x1 or 2x2")
    return int(m.group(1)), int(m.group(2))


# --------------------------------------------------------------------------- shell helpers

def _run(cmd: list[str], check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"timed out after {timeout:g} s: {shlex.join(cmd)}") from None
    if check and proc.returncode != 0:
        raise ClusterError(f"failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                           f"{(proc.stderr or proc.stdout).strip()}")
    return proc


def missing_requirements() -> str | None:
    """Why this machine cannot run the cluster (not root, a tool missing), or None."""
    if os.geteuid() != 0:
        return "needs root (network and UTS namespaces, veths, tc)"
    absent = [t for t in TOOLS if shutil.which(t) is None]
    return f"missing tools: {', '.join(absent)}" if absent else None


def node_names(n: int) -> list[str]:
    return [f"node{i}" for i in range(n)]


def _netns(i: int) -> str:
    return f"{PREFIX}-node{i}"


def _host_veth(i: int) -> str:
    return f"{PREFIX}-v{i}"


def _state_path(state_dir: str) -> str:
    return os.path.join(state_dir, "STATE.json")


def load_state(state_dir: str = STATE_DIR) -> dict | None:
    try:
        with open(_state_path(state_dir)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _save_state(state: dict, state_dir: str) -> None:
    tmp = _state_path(state_dir) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, _state_path(state_dir))


def _check_subnet_free(net: ipaddress.IPv4Network) -> None:
    """Refuse a subnet that overlaps any address or route already on the host."""
    addrs = json.loads(_run(["ip", "-j", "addr", "show"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                other = ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                if other.overlaps(net):
                    raise ClusterError(f"subnet {net} overlaps {a['local']}/{a['prefixlen']} on "
                                       f"{link['ifname']}: choose another with --subnet")
    for r in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]"):
        dst = r.get("dst", "")
        if dst in ("default", "") or r.get("type") in ("local", "broadcast"):
            continue
        other = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if other.overlaps(net):
            raise ClusterError(f"subnet {net} overlaps route {dst} (dev {r.get('dev')}): "
                               "choose another with --subnet")


def netem_available() -> bool:
    """Whether the kernel has the netem qdisc (probed on a throwaway veth pair)."""
    probe_a, probe_b = f"{PREFIX}-pa", f"{PREFIX}-pb"
    _run(["ip", "link", "del", probe_a], check=False)
    _run(["ip", "link", "add", probe_a, "type", "veth", "peer", "name", probe_b])
    try:
        return _run(["tc", "qdisc", "add", "dev", probe_a, "root", "netem", "delay", "1us"],
                    check=False).returncode == 0
    finally:
        _run(["ip", "link", "del", probe_a], check=False)


def _shape(dev: list[str], link: Link) -> None:
    """tbf at the link rate on ``dev`` (``["dev", X]``, maybe behind ``ip netns exec``), plus a
    netem child adding half the one-way delay."""
    *pre, _, name = dev
    rate_Bps = link.rate_bps / 8
    # veths hand tbf GSO packets of up to 64 KiB: a smaller bucket splits every one of them and
    # 16 MiB at 1 Gbit/s took 0.35 s with a 32 KiB burst, 0.145 s with 128 KiB (wire: 0.134 s)
    burst = max(128 * 1024, int(rate_Bps * 250e-6))
    # queue up to ~50 ms (+ the delay) before dropping, so TCP rides the rate instead of losses
    latency_ms = max(50.0, 1e3 * link.delay_s * 2 + 20)
    tc = [*pre, "tc", "qdisc", "add", "dev", name]
    _run([*tc, "root", "handle", "1:", "tbf", "rate", f"{int(link.rate_bps)}bit",
          "burst", str(burst), "latency", f"{latency_ms:g}ms"])
    if link.delay_s > 0:
        half_us = link.delay_s / 2 * 1e6
        _run([*tc, "parent", "1:1", "handle", "10:", "netem", "delay", f"{half_us:g}us",
              "limit", "100000"])


LAUNCHER = """#!/bin/sh
# Written by `python -m mpidml.cluster up`: hydra's -launcher-exec. Called as ssh would be,
# [-x] NODE COMMAND..., it runs COMMAND in NODE's network and UTS namespaces.
[ "$1" = "-x" ] && shift
node=$1; shift
case "$node" in
{cases}
  *) echo "mpidml cluster launch.sh: unknown node '$node' (known: {known})" >&2; exit 255;;
esac
# inter-node MPI traffic must cross the shaped link (see mpidml/cluster.py)
{env}
exec nsenter --net="$netns" --uts="$uts" -- /bin/sh -c "$*"
"""


def _write_launcher(state: dict, state_dir: str) -> str:
    cases = "\n".join(f"  {n['addr']}|{n['hostname']}) netns=/run/netns/{n['netns']}; "
                      f"uts={n['uts']};;" for n in state["nodes"])
    known = " ".join(n["hostname"] for n in state["nodes"])
    env = "\n".join(f": \"${{{k}:={v}}}\"; export {k}" for k, v in MPI_ENV.items())
    path = os.path.join(state_dir, "launch.sh")
    with open(path, "w") as f:
        f.write(LAUNCHER.format(cases=cases, known=known, env=env))
    os.chmod(path, 0o755)
    return path


def hostfile(nodes: int, per_node: int, state_dir: str = STATE_DIR) -> str:
    """Path of a hydra hostfile for ``nodes`` × ``per_node`` ranks (written if absent)."""
    state = load_state(state_dir)
    if state is None:
        raise ClusterError(f"no cluster is up ({_state_path(state_dir)} absent): run "
                           "`python -m mpidml.cluster up` first")
    if nodes > len(state["nodes"]):
        raise ClusterError(f"layout {nodes}x{per_node} needs {nodes} nodes; the cluster has "
                           f"{len(state['nodes'])}")
    path = os.path.join(state_dir, f"hosts-{nodes}x{per_node}")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.writelines(f"{n['addr']}:{per_node}\n" for n in state["nodes"][:nodes])
    return path


def mpiexec_command(layout: str = "", state_dir: str = STATE_DIR, mpiexec: str = "mpiexec") -> list[str]:
    """hydra's ``mpiexec`` arguments that launch across the cluster's nodes (append ``-n K
    prog``). ``layout`` ``"NxK"`` adds ``-f`` with that hostfile; default all nodes × 1."""
    state = load_state(state_dir)
    if state is None:
        raise ClusterError(f"no cluster is up ({_state_path(state_dir)} absent)")
    nodes, per_node = parse_layout(layout) if layout else (len(state["nodes"]), 1)
    cmd = [mpiexec, "-launcher", "ssh", "-launcher-exec", state["launcher"],
           "-iface", state["bridge"], "-f", hostfile(nodes, per_node, state_dir)]
    for k, v in MPI_ENV.items():
        cmd += ["-genv", k, v]
    return cmd


# --------------------------------------------------------------------------- up / down

def up(n: int = 4, link: str | Link = "10gbit", subnet: str = DEFAULT_SUBNET,
       state_dir: str = STATE_DIR) -> dict:
    """Create ``n`` nodes joined by shaped links; returns the recorded state. On any failure
    everything created so far is removed and :class:`ClusterError` raised."""
    why = missing_requirements()
    if why:
        raise ClusterError(f"cannot bring the cluster up: {why}")
    if load_state(state_dir) is not None:
        raise ClusterError(f"a cluster is already up ({_state_path(state_dir)}): "
                           "`python -m mpidml.cluster down` first")
    lk = link if isinstance(link, Link) else parse_link(link)
    net = ipaddress.ip_network(subnet)
    hosts = list(net.hosts())
    if not 1 <= n < len(hosts):
        raise ClusterError(f"{n} nodes do not fit in {net} (the last address is the bridge's)")
    _check_subnet_free(net)
    if lk.delay_s > 0 and not netem_available():
        raise ClusterError(
            f"--link {lk.spec!r}: this kernel ({os.uname().release}) has no netem qdisc "
            "(CONFIG_NET_SCH_NETEM not set; `tc qdisc add ... netem` says 'Specified qdisc kind "
            "is unknown'), so the delay cannot be emulated. Use a rate-only link (e.g. "
            f"--link {lk.spec.split(',')[0]}) or a kernel with sch_netem.")
    os.makedirs(os.path.join(state_dir, "uts"), exist_ok=True)
    bridge_addr = hosts[-1]
    state = {"version": 1, "subnet": str(net), "bridge": BRIDGE, "bridge_addr": str(bridge_addr),
             "link": asdict(lk), "nodes": [], "launcher": "", "state_dir": state_dir}
    _save_state(state, state_dir)
    try:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{bridge_addr}/{net.prefixlen}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        for i, hostname in enumerate(node_names(n)):
            node = {"hostname": hostname, "netns": _netns(i), "veth": _host_veth(i),
                    "addr": str(hosts[i]), "uts": os.path.join(state_dir, "uts", hostname)}
            state["nodes"].append(node)
            _save_state(state, state_dir)
            _make_node(node, net.prefixlen, lk)
        state["launcher"] = _write_launcher(state, state_dir)
        _save_state(state, state_dir)
        hostfile(n, 1, state_dir)
        if n >= 2 and n % 2 == 0:
            hostfile(n // 2, 2, state_dir)
    except BaseException:
        down(state_dir)
        raise
    return state


def _make_node(node: dict, prefixlen: int, link: Link) -> None:
    ns, veth = node["netns"], node["veth"]
    _run(["ip", "netns", "add", ns])
    _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", NODE_IF, "netns", ns])
    _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    inside = ["ip", "-n", ns]
    _run([*inside, "addr", "add", f"{node['addr']}/{prefixlen}", "dev", NODE_IF])
    _run([*inside, "link", "set", NODE_IF, "up"])
    _run([*inside, "link", "set", "lo", "up"])
    open(node["uts"], "w").close()
    _run(["unshare", f"--uts={node['uts']}", "hostname", node["hostname"]])
    _shape(["dev", veth], link)                                   # traffic into the node
    _shape(["ip", "netns", "exec", ns, "dev", NODE_IF], link)     # traffic out of the node


def down(state_dir: str = STATE_DIR) -> list[str]:
    """Remove everything the recorded cluster created (namespaces, veths and their qdiscs,
    bridge, UTS bind mounts, files). Idempotent; returns what was removed."""
    state = load_state(state_dir)
    removed: list[str] = []
    if state is None:
        if os.path.isdir(state_dir):
            shutil.rmtree(state_dir, ignore_errors=True)
        return removed
    for node in state.get("nodes", []):
        if _run(["ip", "netns", "del", node["netns"]], check=False).returncode == 0:
            removed.append(f"netns {node['netns']}")
        # deleting the namespace deletes the pair; this catches a veth whose peer never moved
        if _run(["ip", "link", "del", node["veth"]], check=False).returncode == 0:
            removed.append(f"veth {node['veth']}")
        if os.path.exists(node["uts"]):
            if _run(["umount", node["uts"]], check=False).returncode == 0:
                removed.append(f"uts {node['hostname']}")
            os.remove(node["uts"])
    if _run(["ip", "link", "del", state.get("bridge", BRIDGE)], check=False).returncode == 0:
        removed.append(f"bridge {state.get('bridge', BRIDGE)}")
    shutil.rmtree(state_dir, ignore_errors=True)
    return removed


def status(state_dir: str = STATE_DIR) -> dict:
    """What exists now: the recorded state plus, per resource, whether it is really there."""
    state = load_state(state_dir)
    netns = set(_run(["ip", "netns", "list"]).stdout.split()) if shutil.which("ip") else set()
    bridge_up = _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0
    report = {"up": state is not None, "bridge": bridge_up, "nodes": [],
              "leftover_netns": sorted(x for x in netns if x.startswith(f"{PREFIX}-node"))}
    if state is None:
        return report
    report.update(subnet=state["subnet"], link=state["link"], launcher=state["launcher"],
                  hostfiles=sorted(f for f in os.listdir(state_dir) if f.startswith("hosts-")))
    for node in state["nodes"]:
        present = node["netns"] in netns
        qdisc = _run(["tc", "qdisc", "show", "dev", node["veth"]], check=False).stdout.strip()
        report["nodes"].append({**node, "present": present, "qdisc": qdisc})
        report["leftover_netns"] = [x for x in report["leftover_netns"] if x != node["netns"]]
    return report


# --------------------------------------------------------------------------- CLI

def _print_status(rep: dict) -> None:
    if not rep["up"]:
        print("no cluster recorded" + (f"; bridge {BRIDGE} exists" if rep["bridge"] else "")
              + (f"; stray namespaces {rep['leftover_netns']}" if rep["leftover_netns"] else ""))
        return
    lk = rep["link"]
    print(f"cluster up: {len(rep['nodes'])} nodes on {rep['subnet']} via {BRIDGE}"
          f"{'' if rep['bridge'] else ' (MISSING)'}; link {lk['spec']} "
          f"({lk['rate_bps'] / 1e9:g} Gbit/s, one-way delay {lk['delay_s'] * 1e6:g} us)")
    for n in rep["nodes"]:
        print(f"  {n['hostname']:<6} {n['addr']:<15} netns {n['netns']:<14} veth {n['veth']:<10} "
              f"{'present' if n['present'] else 'MISSING'}  {n['qdisc'].splitlines()[0] if n['qdisc'] else ''}")
    print(f"  launcher {rep['launcher']}; hostfiles {', '.join(rep['hostfiles'])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpidml.cluster", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="create the nodes, bridge and shaped links")
    p_up.add_argument("-n", "--nodes", type=int, default=4)
    p_up.add_argument("--link", default="10gbit", help="[LABEL:]RATE[,DELAY], e.g. 1gbit,100us")
    p_up.add_argument("--subnet", default=DEFAULT_SUBNET)
    sub.add_parser("down", help="remove everything `up` created (idempotent)")
    p_st = sub.add_parser("status", help="list what exists")
    p_st.add_argument("--json", action="store_true")
    p_hf = sub.add_parser("hostfile", help="print the hostfile path for a layout NxK")
    p_hf.add_argument("layout")
    p_mx = sub.add_parser("mpiexec", help="run hydra's mpiexec across the nodes: "
                          "mpiexec [--layout NxK] -- -n K prog ...")
    p_mx.add_argument("--layout", default="")
    p_mx.add_argument("rest", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            _print_status(status(up(args.nodes, args.link, args.subnet)["state_dir"]))
        elif args.cmd == "down":
            removed = down()
            print("removed: " + (", ".join(removed) if removed else "nothing (no cluster recorded)"))
        elif args.cmd == "status":
            rep = status()
            print(json.dumps(rep, indent=1)) if args.json else _print_status(rep)
        elif args.cmd == "hostfile":
            print(hostfile(*parse_layout(args.layout)))
        elif args.cmd == "mpiexec":
            rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
            local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
            exe = local if os.path.exists(local) else "mpiexec"
            cmd = mpiexec_command(args.layout, mpiexec=exe) + rest
            os.execvp(cmd[0], cmd)
    except (ClusterError, ValueError) as e:
        print(f"mpidml.cluster {args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
