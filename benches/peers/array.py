"""Peers of `dagger bench map` / `dagger bench reduce`: numpy and dask.array on the same sizes.

    python3 -I benches/peers/array.py --op map --n 67108864 --block 4194304 --threads 2

Prints one JSON object per peer: bench, peer, n, block, threads, secs (best of --repeat),
gbps (input bytes / secs). `map` is y = x * 2 + 1 (dask: kept in memory with persist),
`reduce` is the sum of all elements, `chain` is --maps maps y = y * 0.5 + 0.25 then the
sum (dask fuses the maps of a chunk into one task). numpy runs on one thread.
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--op", choices=["map", "reduce", "chain"], required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--block", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--maps", type=int, default=10)
    a = p.parse_args()
    import numpy as np

    x = np.random.default_rng(1).random(a.n, dtype=np.float32)
    nbytes = x.nbytes
    out = []
    half, quarter = np.float32(0.5), np.float32(0.25)

    def chain(y):
        for _ in range(a.maps):
            y = y * half + quarter
        return y.sum()

    if a.op == "map":
        out.append(("numpy", best(lambda: x * np.float32(2.0) + np.float32(1.0), a.repeat)))
    elif a.op == "chain":
        out.append(("numpy", best(lambda: chain(x), a.repeat)))
    else:
        out.append(("numpy", best(lambda: x.sum(), a.repeat)))
    try:
        import dask
        import dask.array as da

        d = da.from_array(x, chunks=a.block).persist(scheduler="threads", num_workers=a.threads)
        with dask.config.set(scheduler="threads", num_workers=a.threads):
            if a.op == "map":
                f = lambda: (d * np.float32(2.0) + np.float32(1.0)).persist()
            elif a.op == "chain":
                f = lambda: chain(d).compute()
            else:
                f = lambda: d.sum().compute()
            out.append(("dask", best(f, a.repeat)))
    except ImportError as e:
        print(f"dask unavailable: {e}", file=sys.stderr)
    for peer, secs in out:
        print(json.dumps({"bench": a.op, "peer": peer, "n": a.n, "block": a.block,
                          "threads": a.threads, "secs": secs, "gbps": nbytes / secs / 1e9}))


if __name__ == "__main__":
    main()
