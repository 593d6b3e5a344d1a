"""bf16_if_native: bfloat16 autocast where the CPU computes it natively, float32 elsewhere."""

from __future__ import annotations

import pytest

from spatialflow.engine import precision


@pytest.fixture
def native_cpu(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(precision.torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(precision.torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)


def test_bf16_if_native_resolves_per_machine(native_cpu, monkeypatch):
    assert precision.resolve_amp("bf16_if_native", "cpu") == "bf16"
    assert precision.resolve_amp("bf16_if_native", "auto") == "bf16"
    monkeypatch.setattr(precision.torch.cpu, "_is_avx512_bf16_supported", lambda: False)  # an AVX2-only CPU
    assert precision.resolve_amp("bf16_if_native", "cpu") == "none"
    assert precision.resolve_amp("bf16_if_native", "cuda") == "bf16"  # a GPU computes it
    assert precision.resolve_amp("bf16_if_native", "cuda:1") == "bf16"


def test_other_settings_pass_through_for_the_trainer_to_check(native_cpu):
    assert [precision.resolve_amp(a, "cpu") for a in ("none", "bf16", "fp16")] == ["none", "bf16", "fp16"]


@pytest.mark.parametrize("name,value", [("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core"),
                                        ("ATEN_CPU_CAPABILITY", "avx2"), ("ATEN_CPU_CAPABILITY", "default")])
def test_kernels_capped_below_bf16_count_as_no_native_bf16(native_cpu, monkeypatch, name, value):
    monkeypatch.setenv(name, value)  # how a run imitates an older CPU on a newer one
    assert not precision.native_cpu_bf16()
    assert precision.resolve_amp("bf16_if_native", "cpu") == "none"


def test_caps_at_or_above_bf16_keep_it(native_cpu, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert precision.native_cpu_bf16()


# ------------------------------------------------------------------ threads per training process


def test_a_thread_count_stays_and_null_becomes_this_process_count_on_a_cpu(native_cpu, monkeypatch):
    monkeypatch.setattr(precision.torch, "get_num_threads", lambda: 7)
    assert precision.resolve_cpu_threads(1, "cpu") == 1
    assert precision.resolve_cpu_threads(3, "cuda") == 3  # a number is what the user asked for, anywhere
    assert precision.resolve_cpu_threads(None, "cpu") == 7  # recorded: another count is another identity
    assert precision.resolve_cpu_threads(None, "auto") == 7  # no GPU here (native_cpu)
    assert precision.resolve_cpu_threads(None, "cuda:0") is None  # the GPU computes the weights


def test_cpu_threads_sets_the_count_inside_and_gives_the_callers_back(monkeypatch):
    previous = precision.torch.get_num_threads()
    with precision.cpu_threads(2):
        assert precision.torch.get_num_threads() == 2
    assert precision.torch.get_num_threads() == previous
    with pytest.raises(RuntimeError), precision.cpu_threads(2):  # also when the block fails
        raise RuntimeError
    assert precision.torch.get_num_threads() == previous
    with precision.cpu_threads(None):
        assert precision.torch.get_num_threads() == previous
