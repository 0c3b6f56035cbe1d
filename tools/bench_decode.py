#!/usr/bin/env python3
"""What decoding the hot messages costs, this tree against another, side by side with json.loads.

    .venv/bin/python tools/bench_decode.py --against /work/main [--repeats 21] [--number 2000]
    .venv/bin/python tools/bench_decode.py --profile      # cProfile of this tree's validators

The bodies are the node's own: ``clerk._codec.encode`` of an EXECUTE (as
``clerk._routing`` builds one: null state, due and deadline set), a RESULT (as the executor
builds one: ``ok``, null state, a float duration), a RESULT_ACK and a HEARTBEAT without and
with members (3 members x 20 tasks) and a table delta. Each tree decodes them in a process of
its own (``decode_body``, what the loop and a batch call; ``json.loads`` of the same body in
the same process as the floor); batches alternate between the trees, the order flipping each
repeat; the table gives medians of per-call CPU µs (``time.thread_time``: a shared machine's
preemptions left out) and the ratios (this tree / the other; decode
/ json.loads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, timeit
sys.path.insert(0, sys.argv[1])
from clerk._codec import decode_body, encode
from clerk._messages import Execute, Heartbeat, MemberInfo, Peer, Result, ResultAck
from clerk._replica import ReplicaLog

P = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d+b+r", 0)
members = tuple(MemberInfo(f"n{i}@127.0.0.1", f"127.0.0.1:{47000 + i}", "5f0c1a2b3c4d+b+r", 0,
                           True, tuple(f"task{j}" for j in range(20))) for i in range(3))
log = ReplicaLog("5f0c1a2b3c4d.3.1")
log.put_table({"tasks": {f"task{j}": {"slot": j, "state": {"n": j}} for j in range(20)}})
MSGS = {
    "EXECUTE": Execute(P, 3, "noop1", "r-abcdef0123", 17345678, None, 5000, False,
                       1764800000000, 1764800005000),
    "RESULT": Result(P, 3, "noop1", "r-abcdef0123", 17345678, "ok", None, 0.0213),
    "RESULT_ACK": ResultAck(P, 3, "noop1", "r-abcdef0123"),
    "HEARTBEAT": Heartbeat(P, 3, 10, 2),
    "HEARTBEAT+members": Heartbeat(P, 3, 10, 2, members, log.delta(-1)),
}
FRAMES = {k: encode(m) for k, m in MSGS.items()}
for k, f in FRAMES.items():
    assert decode_body(f[1], f[2]) == MSGS[k], k
number = int(sys.argv[2])
for line in sys.stdin:
    out = {}
    for k, f in FRAMES.items():
        kind, body = f[1], f[2]
        n = number // 20 if "+" in k else number
        out[k] = timeit.timeit(lambda: decode_body(kind, body), number=n,
                               timer=time.thread_time) / n * 1e6
        out[k + " loads"] = timeit.timeit(lambda: json.loads(body), number=n,
                                          timer=time.thread_time) / n * 1e6
    print(json.dumps(out), flush=True)
"""


def child(tree: Path, number: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tree), str(number)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def batch(proc: subprocess.Popen[str]) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("a bench child died (see its error above)")
    return json.loads(line)  # type: ignore[no-any-return]


def profile() -> None:
    import cProfile
    import pstats

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from clerk._codec import _VALIDATORS_PLAIN, encode
    from clerk._messages import Execute, Peer, Result

    p = Peer("n1@127.0.0.1", "127.0.0.1:47001", "5f0c1a2b3c4d+b+r", 0)
    for msg in (Execute(p, 3, "noop1", "r-abcdef0123", 17345678, None, 5000, False,
                        1764800000000, 1764800005000),
                Result(p, 3, "noop1", "r-abcdef0123", 17345678, "ok", None, 0.0213)):
        kind, body = encode(msg)[1:]
        data, validate, path = json.loads(body), _VALIDATORS_PLAIN[kind], kind.decode()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20000):
            validate(data, path)
        prof.disable()
        print(f"--- {path}: 20,000 validations")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, help="the other tree (e.g. /work/main)")
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--number", type=int, default=2000, help="decodes per message per batch")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.profile:
        profile()
        return 0
    here = Path(__file__).resolve().parent.parent
    trees = {"this": here, **({"other": args.against.resolve()} if args.against else {})}
    procs = {name: child(tree, args.number) for name, tree in trees.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    try:
        for r in range(args.repeats):
            order = list(procs) if r % 2 == 0 else list(procs)[::-1]
            for name in order:
                runs[name].append(batch(procs[name]))
    finally:
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)
    med = {name: {k: statistics.median(b[k] for b in bs) for k in bs[0]}
           for name, bs in runs.items()}
    head = ["message", "this µs", "json.loads µs", "this/loads"]
    if "other" in med:
        head += ["other µs", "other/loads", "this/other"]
    rows = [head]
    for k in (k for k in med["this"] if not k.endswith(" loads")):
        this, loads = med["this"][k], med["this"][k + " loads"]
        row = [k, f"{this:.2f}", f"{loads:.2f}", f"{this / loads:.2f}x"]
        if "other" in med:
            other, oloads = med["other"][k], med["other"][k + " loads"]
            row += [f"{other:.2f}", f"{other / oloads:.2f}x", f"{this / other:.2f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"(medians of {args.repeats} interleaved batches of {args.number} decodes; "
          f"HEARTBEAT+members: {args.number // 20})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
