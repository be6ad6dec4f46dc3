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
"""

import argparse
import json
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


def openblas(op, n, dtype, repeat):
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    if op == "gemm":
        b = a.copy()
        return best(lambda: a @ b, repeat)
    if op == "qr":
        return best(lambda: np.linalg.qr(a, mode="raw"), repeat)
    if op == "syrk":
        from scipy.linalg import blas

        syrk = blas.ssyrk if a.dtype == np.float32 else blas.dsyrk
        return best(lambda: syrk(1.0, a), repeat)
    import scipy.linalg as sl

    if op == "lu":
        return best(lambda: sl.lu_factor(a, check_finite=False), repeat)
    s = (a @ a.T) / n + np.eye(n, dtype=a.dtype)
    return best(lambda: sl.cholesky(s, lower=True, check_finite=False), repeat)


def dask_array(op, n, block, dtype, repeat):
    if op != "gemm":
        raise SystemExit(f"the dask peer runs gemm only, not {op}")
    import dask.array as da
    import numpy as np

    rng = np.random.default_rng(0)
    a = da.from_array(rng.standard_normal((n, n)).astype(dtype), chunks=block).persist()
    b = da.from_array(rng.standard_normal((n, n)).astype(dtype), chunks=block).persist()
    return best(lambda: (a @ b).persist(scheduler="threads"), repeat)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peer", choices=["openblas", "dask"], required=True)
    p.add_argument("--op", choices=sorted(FLOPS), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--dtype", choices=["f32", "f64"], default="f32")
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    if a.block < 1:
        raise SystemExit("--block must be at least 1")
    dtype = {"f32": "float32", "f64": "float64"}[a.dtype]
    if a.peer == "openblas":
        secs = openblas(a.op, a.n, dtype, a.repeat)
    else:
        secs = dask_array(a.op, a.n, a.block, dtype, a.repeat)
    out = {"peer": a.peer, "op": a.op, "n": a.n, "dtype": a.dtype}
    if a.peer == "dask":
        out["block"] = a.block
    out.update(secs=secs, gflops=FLOPS[a.op](a.n) / secs / 1e9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
