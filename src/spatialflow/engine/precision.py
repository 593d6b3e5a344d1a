"""What on this machine decides a training run's float results: its autocast precision and its CPU threads.

bfloat16 autocast changes the weights, so it is part of a run's training identity. On a CPU it pays only
where the CPU computes bfloat16 natively (avx512_bf16 or AMX): there a tiny row's step is 1.3-1.4x faster
(docs/reports/benchmarks.md); elsewhere bfloat16 convolutions fall back to slow paths, 20-30x slower than
float32 (pytorch/pytorch#118499, #86550). ``bf16_if_native`` is the setting for a profile meant to run on any
machine: it resolves, before the run's identity is written, to ``bf16`` where that is fast and to ``none``
(float32) where it is not, so the identity always names what trained.
"""

from __future__ import annotations

import contextlib
import os

import torch

BF16_IF_NATIVE = "bf16_if_native"

# ISA caps below avx512_core_bf16: with ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY set to one of these the
# kernels run without native bfloat16 even on a CPU that has it (how a run imitates an older CPU).
_ONEDNN_ISAS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
_ATEN_CAPABILITIES_WITHOUT_BF16 = {"default", "avx2"}


def native_cpu_bf16() -> bool:
    """Whether this CPU, as the kernels are allowed to use it, computes bfloat16 natively (avx512_bf16 or
    AMX, and no ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY`` cap below that)."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper() in _ONEDNN_ISAS_WITHOUT_BF16:
        return False
    if os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() in _ATEN_CAPABILITIES_WITHOUT_BF16:
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_amp(amp: str, device: str) -> str:
    """The ``train.amp`` a run gets for the setting ``amp`` on ``device`` (a run.device setting: cpu, cuda,
    cuda:N or auto). Only ``bf16_if_native`` is resolved (to ``bf16`` on CUDA or a CPU with native
    bfloat16, else ``none``); every other value is returned as it is, for the trainer to check."""
    if amp != BF16_IF_NATIVE:
        return amp
    return "bf16" if runs_on_cuda(device) or native_cpu_bf16() else "none"


def resolve_cpu_threads(threads: int | None, device: str) -> int | None:
    """The ``train.cpu_threads`` a run gets for the setting ``threads`` on ``device``. A number stays as it is
    (every machine and route then trains with it). ``None`` on a CPU becomes this process's thread count now
    (``torch.get_num_threads()``): the identity then names what trains, so a machine or a route with another
    count trains another identity instead of other weights under the same name. On CUDA ``None`` stays: the
    GPU's kernels compute the weights there."""
    if threads is not None or runs_on_cuda(device):
        return threads
    return torch.get_num_threads()


def runs_on_cuda(device: str) -> bool:
    """Whether a run.device setting (cpu, cuda, cuda:N or auto) trains on a GPU here."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """Compute with ``threads`` CPU threads inside the block and give the caller its own count back after it;
    ``None`` changes nothing."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
