"""Task runners chosen at run time: threads, a Dask LocalCluster, dask-cuda, or a scheduler.

The dask-cuda cluster is built by a factory called only when the runner starts, so importing
this module (or any flow) on a CPU host never imports dask_cuda (the string form of
``cluster_class`` is resolved eagerly and fails there; see PREFECT_NOTES §7).
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from eraflow.config import OrchestrationOptions


def local_cuda_cluster(**kwargs: Any) -> Any:
    """One Dask worker per GPU, one thread each: one GPU task per device at a time."""
    from dask_cuda import LocalCUDACluster

    return LocalCUDACluster(threads_per_worker=1, **kwargs)


def make_task_runner(options: OrchestrationOptions) -> TaskRunner[Any]:
    """The runner named by ``options.task_runner`` (and ``dask_address``)."""
    if options.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max(options.cpu_workers, 2))
    from prefect_dask import DaskTaskRunner

    if options.dask_address:
        return DaskTaskRunner(address=options.dask_address)
    if options.task_runner == "dask-cuda":
        return DaskTaskRunner(
            cluster_class=local_cuda_cluster, cluster_kwargs={"dashboard_address": ":0"}
        )
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": options.cpu_workers,
            "threads_per_worker": 1,
            "dashboard_address": ":0",
        }
    )
