"""One BLAS thread per stage thread, in the processes that run eraflow's stages.

Stages run their batches on threads of their own (the task runner's), and the engine's
sequential calculators make many small LAPACK calls (one 8,600 x 39 QR per segment and month
for the ADF test): a BLAS thread pool behind each call only spins. Measured on 2 cores
(``benchmarks/bench_long_segments.py``'s segments, the efficient profile): 0.57 s of CPU with
OpenBLAS's default pool, 0.45 s with one thread, and 7 % less wall time. Process-wide, so only
the processes eraflow starts call it (the ``eraflow`` command, an era-features run on a
worker; prefect.yaml sets the variables for every pool), never the library or a flow called
from someone's own Python; a thread count the user set is kept.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_blas_thread() -> None:
    """One BLAS/OpenMP thread for the libraries loaded now and those loaded later."""
    if any(name in os.environ for name in THREAD_VARIABLES):
        return  # chosen by whoever started the process
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"  # read by the libraries that load later (scipy's OpenBLAS)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # the ones loaded already (NumPy's)
