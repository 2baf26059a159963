"""How one node's ranks of a run across machines ended, in one line of that node's log, and
the cause of a failed run read back from those lines. Torch-free: node K's launcher (engine)
writes the line; node 0's launcher (engine) and node K's command (cockpit) read it.

A rank that loses another machine sees only the consequence (a connection its collective lost),
never the cause; the node whose own rank died has the cause in its torchrun summary.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

# What a rank says when another machine's rank went away: a consequence, never the cause.
_PEER_GONE = re.compile(r"Connection (closed|reset) by peer|remote worker crashing|Broken pipe|Connection refused|"
                        r"DistNetworkError|DistBackendError|Socket Timeout|timed out", re.IGNORECASE)
# The line each node's launcher writes when its ranks end (ended_line), read back by node_cause.
_ENDED = re.compile(r"node (\d+): ranks ended \(torchrun exit code (-?\d+)\)(?:: (.*))?$")


def lost_a_peer(reason: str) -> bool:
    """Whether a run's reason is only that a collective lost another machine."""
    return bool(_PEER_GONE.search(reason))


def ended_line(node: int, code: int, why: str) -> str:
    return f"node {node}: ranks ended (torchrun exit code {code})" + (f": {why}" if why else "")


def last_cause(path: Path) -> str | None:
    """The cause this node's last "ranks ended" line gives: '' for a clean end or only a lost
    connection, None when the node has not written the line."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    ended = [m for m in map(_ENDED.search, lines) if m]
    if not ended:
        return None
    why = ended[-1].group(3) or ""
    if int(ended[-1].group(2)) == 0 or not why or lost_a_peer(why):
        return ""
    return why.replace("(see engine.log)", f"(see {path.name})")


def node_cause(node_logs: dict[int, Path], wait_s: float) -> str:
    """Why a run across machines failed, from the other nodes' logs: the first node whose ranks
    ended with a cause of their own (not a lost connection). A node that has not written its
    line yet is waited for, up to wait_s; one that never does is named as silent (its machine
    may be down). '' when every node saw only the consequence."""
    deadline = time.monotonic() + wait_s
    silent: list[int] = []
    while True:
        silent = []
        for k, path in sorted(node_logs.items()):
            why = last_cause(path)
            if why is None:
                silent.append(k)
            elif why:
                return f"node {k}: {why}"
        if not silent or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if silent:
        k = silent[0]
        return (f"node {k} did not report how its ranks ended (is that machine up? see engine.node{k}.log there); "
                "the other nodes lost their connection to it")
    return ""
