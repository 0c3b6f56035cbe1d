"""The demo behind ``tools/demo``: a live 3-node Clerk cluster on this machine, and a failover.

It starts three nodes (real processes, CURVE on, a throw-away cookie), runs the example task
``clerk.examples:Tally`` every second, shows who runs what, then kills the manager with SIGKILL
and shows the new manager taking over with the tally carrying on. ``--supervisor`` runs the
supervisor demo instead (a small OTP tree whose worker crashes and is restarted).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import clerk  # noqa: E402
from clerk.__main__ import render_status  # noqa: E402
from clerk.examples import Tally  # noqa: E402
from clerk.testing import LocalCluster  # noqa: E402


def tally(cluster: LocalCluster) -> str:
    try:
        st = cluster.status()
    except clerk.NotReachableError:
        return "?"
    for t in st.get("tasks", []):
        if t["name"].endswith("Tally"):
            last = t.get("last_run") or {}
            return (f"{t['runs']['ok']} ok runs, last on {last.get('node')} "
                    f"(slot {last.get('slot')})")
    return "-"


def cluster_demo(seconds: float) -> None:
    print("Starting 3 Clerk nodes on 127.0.0.1 (real processes, CURVE on)...")
    with LocalCluster(3, tasks=[clerk.task(Tally, interval=1000, args={"start": 0})],
                      log_level="warning") as cluster:
        manager = cluster.wait_for_manager(timeout=15)
        print(f"manager elected: {manager}\n")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            print("  " + tally(cluster))
            time.sleep(1)
        print()
        print(render_status(cluster.status()))
        print(f"\nkill -9 of the manager {manager} ...")
        t0 = time.monotonic()
        cluster.kill(manager)
        new = cluster.wait_for_manager(timeout=10)
        print(f"new manager {new}, agreed by every node {1000 * (time.monotonic() - t0):.0f} ms "
              "after the kill")
        for _ in range(4):
            time.sleep(1)
            print("  " + tally(cluster))
        print()
        print(render_status(cluster.status()))
        print("\nstopping the cluster (graceful leave)...")


def supervisor_demo() -> None:
    """A tree run the way an operator runs one: `supervisor tree.toml`, steered with ctl."""
    import signal
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "crashed")
        tree = os.path.join(tmp, "tree.toml")
        with open(tree, "w") as f:
            f.write(f"""control = "ctl.sock"
logs = "logs"
intensity = 3
period = 10

[[child]]
id = "ticker"
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done"]

[[child]]
id = "flaky"
command = ["sh", "-c", "sleep 1; [ -e {flag} ] || {{ touch {flag}; exit 3; }}; sleep 1000"]

[[child]]
id = "pool"
[child.supervisor]
[[child.supervisor.child]]
id = "w1"
command = ["sleep", "1000"]
""")
        run = [sys.executable, "-m", "supervisor"]

        def ctl(*args: str) -> None:
            print(f"$ supervisor ctl {' '.join(args)}", flush=True)
            subprocess.run([*run, "ctl", "--control", os.path.join(tmp, "ctl.sock"), *args])
            print(flush=True)

        print(f"$ supervisor {tree}   (its log below, interleaved)\n", flush=True)
        proc = subprocess.Popen([*run, tree], cwd=Path(__file__).resolve().parents[1])
        try:
            sock = os.path.join(tmp, "ctl.sock")
            deadline = time.monotonic() + 20
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            ctl("status")
            time.sleep(2)  # flaky exits with code 3 once and is restarted
            ctl("status")
            ctl("restart", "pool/w1")
            ctl("tail", "ticker", "-n", "3")
        finally:
            proc.send_signal(signal.SIGTERM)
            print(f"SIGTERM: the tree exited with code {proc.wait()}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supervisor", action="store_true", help="run the supervisor demo")
    p.add_argument("--seconds", type=float, default=5.0, help="how long to watch before the kill")
    args = p.parse_args()
    if args.supervisor:
        supervisor_demo()
    else:
        cluster_demo(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
