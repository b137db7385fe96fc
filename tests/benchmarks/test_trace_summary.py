"""`benchmarks/trace_summary.py`: device op time from jax.profiler traces."""

import gzip
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "benchmarks"))
from trace_summary import YNNPACK_KIND, summarise_trace


def _write_trace(directory: pathlib.Path, events: list[dict]) -> None:
    run = directory / "plugins" / "profile" / "run"
    run.mkdir(parents=True)
    with gzip.open(run / "host.trace.json.gz", "wt") as trace:
        json.dump({"traceEvents": events}, trace)


def test_device_kernels_are_summed_by_op_and_kind_and_their_union_is_the_busy_time(tmp_path):
    def kernel(tid, ts, dur, name, hlo_op):
        return {"ph": "X", "pid": 2, "tid": tid, "ts": ts, "dur": dur, "name": name,
                "args": {"hlo_op": hlo_op}}

    _write_trace(tmp_path, [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "tid": 10, "name": "thread_name", "args": {"name": "Stream #13"}},
        {"ph": "M", "pid": 2, "tid": 11, "name": "thread_name", "args": {"name": "Stream #14"}},
        {"ph": "M", "pid": 2, "tid": 12, "name": "thread_name", "args": {"name": "XLA Modules"}},
        {"ph": "X", "pid": 1, "tid": 7, "ts": 0, "dur": 5000, "name": "$train_step"},
        {"ph": "X", "pid": 2, "tid": 12, "ts": 0, "dur": 2000, "name": "jit__step"},
        kernel(10, 0, 600, "sm90_xmma_gemm_bf16", "dot.1"),
        kernel(10, 600, 200, "loop_multiply_fusion", "multiply_fusion.4"),
        kernel(11, 700, 300, "input_reduce_fusion", "reduce_fusion.2"),  # overlaps by 100
        kernel(10, 1500, 400, "cutlass_80_tensorop_bf16_gemm", "fusion.7"),
        kernel(10, 1900, 100, "rng_bit_generator", "rng-bit-generator.3"),
        # Inside a CUDA graph the HLO op is the command buffer; Hopper's cuBLAS names its GEMMs
        # nvjet.
        kernel(11, 1000, 100, "nvjet_sm90_tst_128x128_64x6_2x1_v_bz_TNT", "command_buffer_1"),
    ])
    summary = summarise_trace(str(tmp_path), steps=2, wall_s=0.002)
    assert summary["op_ms_per_step"] == pytest.approx(1.7 / 2)
    assert summary["busy_fraction"] == pytest.approx((1100 + 500) / 2000)
    assert summary["by_kind_ms_per_step"] == {"matmul": 0.55, "reduction": 0.15,
                                              "other fusion": 0.1, "random bits": 0.05}
    assert summary["top_ops"][:2] == [["dot", 0.3, 0.353], ["fusion", 0.2, 0.235]]
    assert summary["top_instances"][0] == ["dot.1", 0.3, 0.353]
    assert summary["top_kernels"][0] == ["sm90_xmma_gemm_bf16", 0.3, 0.353]
    assert ["nvjet_sm90_tst_128x128_64x6_2x1_v_bz_TNT", 0.05, 0.059] in summary["top_kernels"]


def test_a_cpu_trace_puts_a_large_matmul_first(tmp_path):
    left = jnp.ones((1024, 1024), jnp.float32)

    @jax.jit
    def work(x):
        return jnp.tanh(x @ x) + 1.0

    jax.block_until_ready(work(left))
    jax.profiler.start_trace(str(tmp_path))
    jax.block_until_ready(work(work(left)))
    jax.profiler.stop_trace()
    summary = summarise_trace(str(tmp_path), steps=2, wall_s=1.0)
    kinds = summary["by_kind_ms_per_step"]
    assert next(iter(kinds)) in ("matmul", YNNPACK_KIND), kinds
    assert 0.0 < summary["busy_fraction"] <= 1.0
    assert not any(name.startswith(("$", "end:")) for name, _, _ in summary["top_ops"])


def test_a_directory_without_a_trace_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        summarise_trace(str(tmp_path), steps=1, wall_s=1.0)
