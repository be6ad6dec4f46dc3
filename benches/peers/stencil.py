"""Peer of `dagger bench stencil --peer`: the 5-point Jacobi iteration in numpy slicing.

    python3 -I benches/peers/stencil.py --n 8192 --iters 20 --dtype f32

The grid is n x n with a constant-zero halo (an (n + 2)^2 array whose border stays 0, as
`Boundary::Constant(0)`); each iteration writes the mean of the four neighbours of every
interior point into the other of two buffers. numpy runs on one thread. Runs once to warm
up, then --repeat times.

Prints one JSON object: peer, n, iters, dtype, secs (the best run) and gpts (10^9 point
updates per second).

With --serve it makes the grid, runs once to warm up and prints `{"ready": true}`, then
for each line `run` read from standard input runs twice in a row, times the second run
(so that it finds its memory warm from the first, as in a loop of runs) and prints
`{"secs": …, "gpts": …}` for it, until end of input. `dagger bench stencil` uses this to alternate
numpy's runs with its own, so that both meet the same load on a shared machine.
"""

import argparse
import json
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    import numpy as np

    dtype = {"f32": np.float32, "f64": np.float64}[a.dtype]
    n = a.n
    x = np.random.default_rng(1).random((n, n)).astype(dtype)
    q = dtype(0.25)

    def run():
        u = np.zeros((n + 2, n + 2), dtype=dtype)
        v = np.zeros_like(u)
        u[1:-1, 1:-1] = x
        for _ in range(a.iters):
            np.add(u[:-2, 1:-1], u[2:, 1:-1], out=v[1:-1, 1:-1])
            v[1:-1, 1:-1] += u[1:-1, :-2]
            v[1:-1, 1:-1] += u[1:-1, 2:]
            v[1:-1, 1:-1] *= q
            u, v = v, u
        return u

    run()
    if a.serve:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                raise SystemExit(f"unknown command {line.strip()!r}: the only one is `run`")
            run()
            t0 = time.perf_counter()
            run()
            secs = time.perf_counter() - t0
            print(json.dumps({"secs": secs, "gpts": n * n * a.iters / secs / 1e9}), flush=True)
        return
    secs = float("inf")
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        run()
        secs = min(secs, time.perf_counter() - t0)
    print(json.dumps({"peer": "numpy", "n": n, "iters": a.iters, "dtype": a.dtype,
                      "secs": secs, "gpts": n * n * a.iters / secs / 1e9}))


if __name__ == "__main__":
    main()
