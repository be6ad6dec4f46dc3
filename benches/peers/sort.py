"""Peer of `dagger bench sort`: numpy.sort of the same f64 data.

    python3 -I benches/peers/sort.py --data a.npy --repeat 2

Loads the 1-D array dagger wrote (`--data`, a .npy file), then times `numpy.sort` of it
(the default kind: numpy's introsort, or its SIMD sort where the CPU has one) --repeat
times. numpy sorts on one thread.

Prints one JSON object: peer, n and secs (the best run).

With --serve it loads the data, sorts once to warm up and prints `{"ready": true}` (the
file may be removed from then on), then for each line `run` read from standard input
sorts twice in a row, times the second sort (so that it finds its memory warm from the
first, as in a loop of runs) and prints `{"secs": …}` for it, until end of input. `dagger bench sort`
uses this to alternate numpy's sorts with its own, so that both meet the same load on a
shared machine.
"""

import argparse
import json
import sys
import time


def timed_sort(np, x):
    t0 = time.perf_counter()
    s = np.sort(x)
    secs = time.perf_counter() - t0
    del s
    return secs


def serve(np, x):
    """Warm up, then per line `run` on standard input sort twice and time the second."""
    timed_sort(np, x)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            raise SystemExit(f"unknown command {line.strip()!r}: the only one is `run`")
        timed_sort(np, x)
        print(json.dumps({"secs": timed_sort(np, x)}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    import numpy as np

    x = np.load(a.data)
    if a.serve:
        serve(np, x)
        return
    secs = min(timed_sort(np, x) for _ in range(max(a.repeat, 1)))
    print(json.dumps({"peer": "numpy.sort", "n": int(x.size), "secs": secs}))


if __name__ == "__main__":
    main()
