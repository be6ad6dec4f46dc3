"""Peers of `dagger bench map` / `dagger bench reduce`: numpy and dask.array on the same sizes.

    python3 -I benches/peers/array.py --op map --n 67108864 --block 4194304 --threads 2

Prints one JSON object per peer: bench, peer, n, block, threads, secs (best of --repeat),
gbps (input bytes / secs). `map` is y = x * 2 + 1 (dask: kept in memory with persist),
`reduce` is the sum of all elements, `chain` is --maps maps y = y * 0.5 + 0.25 then the
sum (dask fuses the maps of a chunk into one task). numpy runs on one thread. --peer numpy
or --peer dask runs that peer alone (by default both run).

With --serve (and one --peer) it makes the data, runs once to warm up and prints
`{"ready": true}`, then for each line `run` read from standard input runs twice in a row,
times the second run (so that it finds its memory warm from the first, as in a loop of
runs) and prints `{"secs": …, "gbps": …}` for it, until end of input. `dagger bench` uses this to
alternate the peer's runs with its own, so that both meet the same load on a shared
machine.
"""

import argparse
import json
import sys
import time


def best(f, repeat):
    t = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def job(peer, a, x):
    """The peer's run of --op on `x` as a function of no arguments, its data made."""
    import numpy as np

    half, quarter = np.float32(0.5), np.float32(0.25)

    def chain(y):
        for _ in range(a.maps):
            y = y * half + quarter
        return y.sum()

    if peer == "numpy":
        if a.op == "map":
            return lambda: x * np.float32(2.0) + np.float32(1.0)
        if a.op == "chain":
            return lambda: chain(x)
        return lambda: x.sum()
    import dask
    import dask.array as da

    d = da.from_array(x, chunks=a.block).persist(scheduler="threads", num_workers=a.threads)
    # For the rest of the process: every run below goes to the threaded scheduler.
    dask.config.set(scheduler="threads", num_workers=a.threads)
    if a.op == "map":
        return lambda: (d * np.float32(2.0) + np.float32(1.0)).persist()
    if a.op == "chain":
        return lambda: chain(d).compute()
    return lambda: d.sum().compute()


def serve(run, nbytes):
    """Warm up, then per line `run` on standard input call `run` twice and time the second."""
    run()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            raise SystemExit(f"unknown command {line.strip()!r}: the only one is `run`")
        run()
        t0 = time.perf_counter()
        run()
        secs = time.perf_counter() - t0
        print(json.dumps({"secs": secs, "gbps": nbytes / secs / 1e9}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--op", choices=["map", "reduce", "chain"], required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--block", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--maps", type=int, default=10)
    p.add_argument("--peer", choices=["numpy", "dask"])
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    if a.serve and a.peer is None:
        raise SystemExit("--serve runs one peer: give --peer numpy or --peer dask")
    import numpy as np

    x = np.random.default_rng(1).random(a.n, dtype=np.float32)
    nbytes = x.nbytes
    if a.serve:
        serve(job(a.peer, a, x), nbytes)
        return
    out = []
    for peer in [a.peer] if a.peer else ["numpy", "dask"]:
        try:
            f = job(peer, a, x)
        except ImportError as e:
            if peer != "dask":
                raise
            print(f"dask unavailable: {e}", file=sys.stderr)
            continue
        out.append((peer, best(f, a.repeat)))
    for peer, secs in out:
        print(json.dumps({"bench": a.op, "peer": peer, "n": a.n, "block": a.block,
                          "threads": a.threads, "secs": secs, "gbps": nbytes / secs / 1e9}))


if __name__ == "__main__":
    main()
