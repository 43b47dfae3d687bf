"""Recognising a GPU out-of-memory error without importing CuPy."""

from __future__ import annotations

from eraflow.stages.features import is_device_oom


class OutOfMemoryError(Exception):  # same name as cupy.cuda.memory.OutOfMemoryError
    pass


class CUDARuntimeError(Exception):  # same name as cupy_backends' runtime error
    pass


def test_gpu_oom_is_recognised() -> None:
    assert is_device_oom(OutOfMemoryError("Out of memory allocating 8,589,934,592 bytes"))
    assert is_device_oom(CUDARuntimeError("cudaErrorMemoryAllocation: out of memory on device"))


def test_other_errors_are_not() -> None:
    assert not is_device_oom(ValueError("memory"))
    assert not is_device_oom(CUDARuntimeError("cudaErrorInvalidValue: invalid argument"))
    assert not is_device_oom(MemoryError("host memory"))
