"""Where a traced training step's time goes, from a `jax.profiler` trace: time per op and per kind.

`jax.profiler.stop_trace` writes a Chrome-format `*.trace.json.gz` beside its XPlane file. On an
accelerator the ops are the events of the `/device:...` processes (kernels on streams, named by
kernel or HLO op); on the CPU backend they are the events of XLA's own threads (`tf_XLA...`: the
client's, which runs a program, and the thread pool's). Their union over time against the traced
wall time says how busy the device was; their sum by name says where the time went. TensorBoard's
profile plugin shows the same trace interactively; this keeps the figures in the benchmark's JSON,
so that a short device session brings them back.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

# Host-side bookkeeping recorded in the same trace: Python frames, dispatch, thunk and thread-pool
# scopes and the "end:" markers of the CPU runtime.
HOST_EVENT = re.compile(r"^(\$|end:)|Thunk|Slinky|PjRt|Pjit|ParseArguments|Handle input")
# Control-flow ops of the CPU runtime, whose events span the ops of their bodies.
CONTAINER_OP = re.compile(r"^(while|conditional|call)(\.\d+)?$")
YNNPACK_KIND = "YNNPACK fusion (XLA:CPU's dots and some reductions)"
KINDS = (
    (YNNPACK_KIND, re.compile(r"ynn_fusion")),
    # nvjet: the GEMM kernels of cuBLAS on Hopper.
    ("matmul", re.compile(r"gemm|xmma|cutlass|cublas|nvjet|dot|matmul|conv")),
    ("reduction", re.compile(r"reduce")),
    ("random bits", re.compile(r"rng|threefry|philox|random")),
    ("copy/transpose", re.compile(r"copy|transpose")),
    ("other fusion", re.compile(r"fusion")),
)


def op_kind(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name.lower())), "other")


def instance_name(event: dict) -> str:
    """The HLO op instance when the trace names it (GPU kernels carry it in their arguments)."""
    return (event.get("args") or {}).get("hlo_op") or event["name"]


def op_name(instance: str) -> str:
    """Without the numeric suffix that tells instances of the same op apart."""
    return re.sub(r"[.:]\d+$", "", instance)


def _op_events(events: list[dict]) -> list[dict]:
    processes = {event["pid"]: event["args"]["name"] for event in events
                 if event.get("ph") == "M" and event.get("name") == "process_name"}
    threads = {(event["pid"], event.get("tid")): event["args"]["name"] for event in events
               if event.get("ph") == "M" and event.get("name") == "thread_name"}
    devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
    timed = [event for event in events if event.get("ph") == "X" and event.get("dur")]
    if devices:
        # Kernels run on "Stream #..." lines (GPU) or the "XLA Ops" line (TPU); the device's
        # other lines ("XLA Modules", "Steps") span whole programs and would count them twice.
        lines = {key: name for key, name in threads.items() if key[0] in devices}
        ops = ({key for key, name in lines.items() if name.startswith("Stream")}
               or {key for key, name in lines.items() if name == "XLA Ops"})
        if ops:
            return [event for event in timed if (event["pid"], event.get("tid")) in ops]
        return [event for event in timed if event["pid"] in devices]
    compute = {key for key, name in threads.items() if name.startswith("tf_XLA")}
    return [event for event in timed if (event["pid"], event.get("tid")) in compute
            and not HOST_EVENT.search(event["name"]) and not CONTAINER_OP.match(event["name"])]


def _busy_microseconds(events: list[dict]) -> float:
    """Length of the union of the events' intervals: time during which some op ran."""
    busy, end = 0.0, float("-inf")
    for event in sorted(events, key=lambda event: event["ts"]):
        start, stop = event["ts"], event["ts"] + event["dur"]
        if start > end:
            busy += stop - start
        elif stop > end:
            busy += stop - end
        end = max(end, stop)
    return busy


def summarise_trace(trace_dir: str, steps: int, wall_s: float, top: int = 15) -> dict:
    """Per-step milliseconds by op (instances of one op together, and apart) and by kind, and the
    fraction of `wall_s` during which some op was running."""
    paths = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"{trace_dir}: no *.trace.json.gz written by jax.profiler")
    with gzip.open(max(paths, key=os.path.getmtime)) as trace:
        ops = _op_events(json.load(trace)["traceEvents"])
    by_op, by_kind, by_instance, by_kernel = (collections.Counter() for _ in range(4))
    for event in ops:
        instance = instance_name(event)
        by_instance[instance] += event["dur"]
        by_kernel[event["name"]] += event["dur"]
        by_op[op_name(instance)] += event["dur"]
        by_kind[op_kind(f"{event['name']} {instance}")] += event["dur"]  # kernel name and HLO op
    total = sum(by_op.values()) or 1.0

    def per_step(microseconds: float) -> float:
        return round(microseconds / 1e3 / steps, 2)

    def ranked(counter: collections.Counter) -> list[list]:
        return [[name, per_step(us), round(us / total, 3)] for name, us in counter.most_common(top)]

    return {
        "steps": steps,
        "busy_fraction": round(_busy_microseconds(ops) / 1e6 / wall_s, 3),
        "op_ms_per_step": per_step(total),
        "by_kind_ms_per_step": {kind: per_step(us) for kind, us in by_kind.most_common()},
        "top_ops": ranked(by_op),
        "top_instances": ranked(by_instance),
        # Kernels by name: what is left to read when XLA:GPU's command buffers (CUDA graphs) wrap
        # many ops into one `command_buffer` instance.
        "top_kernels": ranked(by_kernel),
    }
