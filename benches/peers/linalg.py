"""Peers of `dagger bench gemm|syrk|cholesky|lu|qr --peer`: OpenBLAS (through numpy and scipy) and
dask.array on the same sizes.

    python3 -I benches/peers/linalg.py --peer openblas --op gemm --n 4096 --dtype f32
    python3 -I benches/peers/linalg.py --peer dask --op gemm --n 4096 --block 1024 --dtype f32

`openblas` times numpy `a @ b` (GEMM), scipy `?syrk` (SYRK), scipy `cholesky` of
a aᵀ / n + I (Cholesky) scipy `lu_factor` (LU, partial pivoting: LAPACK `?getrf`) and numpy `qr(a, mode="raw")`
(QR, the factorization alone: LAPACK `?geqrf`); `dask` times dask.array's blocked matmul on the threaded scheduler
with chunks of --block (GEMM only). Each runs once to warm up, then --repeat times.

Prints one JSON object: peer, op, n, dtype, block (dask), secs (the best run) and gflops
(GEMM 2n³, SYRK n³, Cholesky n³/3, LU 2n³/3, QR 4n³/3).

With --serve it makes the data, runs once to warm up and prints `{"ready": true}`, then
for each line `run` read from standard input runs twice in a row, times the second run
(so that it finds its memory warm from the first, as in a loop of runs) and prints
`{"secs": …, "gflops": …}` for it, until end of input. `dagger bench` uses this to alternate the peer's
runs with its own, so that both meet the same load on a shared machine.
"""

import argparse
import json
import sys
import time

FLOPS = {
    "gemm": lambda n: 2 * n**3,
    "syrk": lambda n: n**3,
    "cholesky": lambda n: n**3 / 3,
    "lu": lambda n: 2 * n**3 / 3,
    "qr": lambda n: 4 * n**3 / 3,
}


def best(f, repeat):
    f()
    t = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - t0)
    return t


def openblas(op, n, dtype):
    """The peer's run of `op` as a function of no arguments, its data made."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    if op == "gemm":
        b = a.copy()
        return lambda: a @ b
    if op == "qr":
        return lambda: np.linalg.qr(a, mode="raw")
    if op == "syrk":
        from scipy.linalg import blas

        syrk = blas.ssyrk if a.dtype == np.float32 else blas.dsyrk
        return lambda: syrk(1.0, a)
    import scipy.linalg as sl

    if op == "lu":
        return lambda: sl.lu_factor(a, check_finite=False)
    s = (a @ a.T) / n + np.eye(n, dtype=a.dtype)
    return lambda: sl.cholesky(s, lower=True, check_finite=False)


def dask_array(op, n, block, dtype):
    """dask.array's blocked product as a function of no arguments, its inputs persisted."""
    if op != "gemm":
        raise SystemExit(f"the dask peer runs gemm only, not {op}")
    import dask.array as da
    import numpy as np

    rng = np.random.default_rng(0)
    a = da.from_array(rng.standard_normal((n, n)).astype(dtype), chunks=block).persist()
    b = da.from_array(rng.standard_normal((n, n)).astype(dtype), chunks=block).persist()
    return lambda: (a @ b).persist(scheduler="threads")


def serve(job, flops):
    """Warm up, then per line `run` on standard input run `job` twice and time the second."""
    job()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            raise SystemExit(f"unknown command {line.strip()!r}: the only one is `run`")
        job()
        t0 = time.perf_counter()
        job()
        secs = time.perf_counter() - t0
        print(json.dumps({"secs": secs, "gflops": flops / secs / 1e9}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=["openblas", "dask"], required=True)
    p.add_argument("--op", choices=sorted(FLOPS), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    if a.block < 1:
        raise SystemExit("--block must be at least 1")
    dtype = {"f32": "float32", "f64": "float64"}[a.dtype]
    if a.peer == "openblas":
        job = openblas(a.op, a.n, dtype)
    else:
        job = dask_array(a.op, a.n, a.block, dtype)
    flops = FLOPS[a.op](a.n)
    if a.serve:
        serve(job, flops)
        return
    secs = best(job, a.repeat)
    out = {"peer": a.peer, "op": a.op, "n": a.n, "dtype": a.dtype}
    if a.peer == "dask":
        out["block"] = a.block
    out.update(secs=secs, gflops=flops / secs / 1e9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
