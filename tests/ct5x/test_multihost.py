"""N processes give one process's run: 2 processes x 2 simulated CPU devices (jax.distributed on
localhost, gloo collectives, T5X's flags) against 1 process with 4 devices, with the model axis
inside the processes (NUM_PARTITIONS 1, 2) and across them (4); both processes killed and started
again, with their MODEL_DIR in a bucket of a GCS emulator on localhost (on local disk where the
emulator cannot start); a wrong --process_count and a peer that never comes end with one line.

Every process is started once: `ct5x sweep run` trains the three NUM_PARTITIONS runs in one
process (or one pair), and all processes of a phase run at the same time. The network has one
layer per stack and XLA compiles without its slower optimisations: compiling is most of a tiny
run's time, and every run compared is compiled alike.
"""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from training_run import (
    REPO,
    make_hf_checkpoint,
    subprocess_env,
    train_command,
    write_experiment,
)

from ct5x import storage
from ct5x.checkpoints import load_checkpoint
from ct5x.checkpoints.train_state import is_committed
from ct5x.checkpoints.tree import flatten
from ct5x.sweep.plan import load_runs

PARTITIONS = (1, 2, 4)
STEPS = 20


class Processes:
    """Processes started together with their output captured; `wait` returns (code, out, err)."""

    def __init__(self, tmp_path):
        self.tmp_path, self.started = tmp_path, []

    def start(self, name: str, command: list[str], devices: int):
        # Open while the process runs; `wait` reads them.
        out, err = (open(self.tmp_path / f"{name}.{kind}", "w+")  # noqa: SIM115
                    for kind in ("out", "err"))
        env = subprocess_env(devices)
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        self.started.append(process)
        return process, out, err

    @staticmethod
    def wait(started, timeout=300):
        process, out, err = started
        code = process.wait(timeout=timeout)
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read()

    def kill_all(self):
        for process in self.started:
            if process.poll() is None:
                process.kill()


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    started = Processes(tmp_path_factory.mktemp("processes"))
    yield started
    started.kill_all()


def _port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _joined(index: int, count: int = 2, port: int | None = None, timeout: int = 60):
    return ["--multiprocess_gpu", f"--coordinator_address=localhost:{port}",
            f"--process_count={count}", f"--process_index={index}",
            f"--initialization_timeout={timeout}"]


def _sweep(experiment, runs_dir) -> list[str]:
    return [sys.executable, "-m", "ct5x.cli", "sweep", "run", str(experiment), "--no-report",
            f"--gin.RUNS_DIR='{runs_dir}'"]


@pytest.fixture(scope="module")
def inputs(synthetic_inputs, tmp_path_factory):
    """(DATA_DIR, a one-layer-per-stack checkpoint with the synthetic data's vocabulary)."""
    data_dir, checkpoint = synthetic_inputs
    one_layer = make_hf_checkpoint(tmp_path_factory.mktemp("one_layer") / "hf",
                                   str(checkpoint / "spiece.model"), num_layers=1,
                                   num_decoder_layers=1)
    return data_dir, one_layer


@pytest.fixture(scope="module")
def killed_dir(request, tmp_path_factory) -> str:
    """MODEL_DIR of the killed run: in the emulated bucket, or on local disk without one."""
    try:
        return f"{request.getfixturevalue('gcs_bucket')}/multihost/killed"
    except pytest.skip.Exception:
        return str(tmp_path_factory.mktemp("killed"))


@pytest.fixture(scope="module")
def runs(inputs, processes, killed_dir, tmp_path_factory):
    """Phase 1, all at once: the sweep on 1 process x 4 devices, the same sweep on 2 processes x
    2 devices, and a NUM_PARTITIONS=4 run of 2 processes killed with SIGKILL once its first
    checkpoint has committed. Returns {"one": runs, "two": runs, "killed": (run, flags)} and the
    outputs."""
    data_dir, checkpoint = inputs
    root = tmp_path_factory.mktemp("multihost")
    models = [{"name": f"np{n}", "checkpoint": str(checkpoint),
               "bindings": {"NUM_PARTITIONS": n}} for n in PARTITIONS]
    experiment = write_experiment(
        root / "processes.gin", models, [0], DATA_DIR=str(data_dir), TRAIN_STEPS=STEPS,
        EVAL_PERIOD=10, LOG_PERIOD=1, EVAL_EXAMPLES=8,
        TASK_FEATURE_LENGTHS={"inputs": 32, "targets": 16})
    one = processes.start("one", _sweep(experiment, root / "one"), devices=4)
    port = _port()
    two = [processes.start(f"two{i}", _sweep(experiment, root / "two") + _joined(i, port=port),
                           devices=2) for i in range(2)]
    _, planned = load_runs(str(experiment), [f"RUNS_DIR='{root / 'two'}'"])
    across = planned[PARTITIONS.index(4)]
    flags = [*(f"--gin_file={name}" for name in across.gin_files),
             *(f"--gin.{binding}" for binding in across.bindings
               if not binding.startswith("MODEL_DIR=")), f"--gin.MODEL_DIR='{killed_dir}'"]
    port = _port()
    victims = [processes.start(f"killed{i}", train_command(flags + _joined(i, port=port)),
                               devices=2) for i in range(2)]
    deadline = time.time() + 300
    first = storage.path(killed_dir) / "checkpoint_10"
    while not is_committed(first):
        assert all(p.poll() is None for p, _, _ in victims), "the killed run ended early"
        assert time.time() < deadline, "checkpoint_10 not committed in time"
        time.sleep(0.05)
    for victim, _, _ in victims:
        victim.send_signal(signal.SIGKILL)
    outputs = {"one": processes.wait(one), "two": [processes.wait(p) for p in two]}
    for victim, _, _ in victims:
        victim.wait()
    _, one_runs = load_runs(str(experiment), [f"RUNS_DIR='{root / 'one'}'"])
    return {"one": one_runs, "two": planned, "killed": (killed_dir, flags),
            "outputs": outputs}


def _metrics(model_dir):
    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _params(model_dir, step=STEPS):
    return flatten(load_checkpoint(storage.path(model_dir) / f"checkpoint_{step}").params)


def _worst(expected, found):
    assert expected.keys() == found.keys()
    return max(float(np.max(np.abs(expected[key] - found[key]))) for key in expected)


def test_both_sweeps_end_well_and_process_1_is_silent(runs):
    code, _, err = runs["outputs"]["one"]
    assert code == 0, err[-3000:]
    (code0, out0, err0), (code1, out1, err1) = runs["outputs"]["two"]
    assert (code0, code1) == (0, 0), (err0[-3000:], err1[-3000:])
    assert "2 processes joined at localhost" in out0 and "trained 3" in out0
    assert "step 20: validation" in out0
    assert out1 == ""  # one voice: process 1's standard output goes nowhere
    assert all(line.startswith("process 1: ") for line in err1.splitlines() if line.strip())


@pytest.mark.parametrize("partitions", PARTITIONS)
def test_two_processes_give_the_one_process_run(runs, partitions):
    index = PARTITIONS.index(partitions)
    one, two = (pathlib.Path(runs[key][index].model_dir) for key in ("one", "two"))
    expected, found = _metrics(one), _metrics(two)
    losses = [(line["loss"], other["loss"]) for line, other in zip(expected, found)
              if "loss" in line]
    assert [line["step"] for line in expected] == [line["step"] for line in found]
    assert len(losses) == STEPS
    np.testing.assert_allclose([b for _, b in losses], [a for a, _ in losses], rtol=1e-4)
    # Validation: the same decoded text and task metrics; the loss, a sum over sharded scores,
    # to rounding.
    validation = [[line for line in lines if "validation/loss" in line]
                  for lines in (expected, found)]
    assert [line["step"] for line in validation[0]] == [line["step"] for line in validation[1]]
    for want, got in zip(*validation):
        assert got.pop("validation/loss") == pytest.approx(want.pop("validation/loss"), rel=1e-6)
        assert got == want
        predictions = f"validation/predictions_{want['step']}.jsonl"
        assert (two / predictions).read_text() == (one / predictions).read_text()
    records = [json.loads((d / "run.json").read_text()) for d in (one, two)]
    assert records[0]["best_step"] == records[1]["best_step"]
    assert _worst(_params(one), _params(two)) <= 1e-5
    for step_dir in two.glob("checkpoint_*"):
        assert sorted(p.name for p in step_dir.iterdir()) == [
            "state", "train_ds-000-of-002.json", "train_ds-001-of-002.json"]


def test_both_processes_killed_and_restarted_end_with_the_uninterrupted_run(runs, processes):
    killed_dir, flags = runs["killed"]
    run_file = storage.path(killed_dir) / "run.json"
    assert not run_file.is_file() or not json.loads(run_file.read_text())["finished"]
    port = _port()
    restarted = [processes.start(f"restarted{i}", train_command(flags + _joined(i, port=port)),
                                 devices=2) for i in range(2)]
    (code0, out0, err0), (code1, _, err1) = (processes.wait(p) for p in restarted)
    assert (code0, code1) == (0, 0), (err0[-3000:], err1[-3000:])
    assert "resuming from" in out0
    uninterrupted = pathlib.Path(runs["two"][PARTITIONS.index(4)].model_dir)
    assert _worst(_params(uninterrupted), _params(killed_dir)) <= 1e-6


def test_a_wrong_process_count_stops_both_with_one_line(inputs, processes, tmp_path):
    """Process 1 says 3 processes where 2 joined: it stops with one line, and process 0, already
    started, stops too instead of waiting for it."""
    data_dir, checkpoint = inputs
    flags = [sys.executable, "-m", "ct5x.train", "--gin_file=runs/finetune.gin",
             f"--gin.MODEL_DIR='{tmp_path}'", f"--gin.DATA_DIR='{data_dir}'",
             f"--gin.INITIAL_CHECKPOINT_PATH='{checkpoint}'",
             "--gin.MIXTURE_OR_TASK_NAME='ncbi_disease_fold0'"]
    port = _port()
    pair = [processes.start(f"count{i}", flags + _joined(i, count, port), devices=2)
            for i, count in ((0, 2), (1, 3))]
    (code0, _, err0), (code1, _, err1) = (processes.wait(p, timeout=120) for p in pair)
    expected = (f"ct5x train: process 1: error: --process_count=3, but 2 processes joined at "
                f"localhost:{port}")
    assert err1.strip().splitlines() == [expected]
    assert err0.strip().splitlines()[-1].startswith(
        "ct5x train: process 0: stopped: process 1 failed: error: --process_count=3")
    assert code0 == code1 == 2


JOIN_ALONE = """
import sys
from ct5x import multihost
flags = multihost.ProcessFlags(True, sys.argv[1], process_count=2, process_index=1,
                               initialization_timeout=3)
multihost.start(flags, "ct5x train")
"""


def test_a_peer_that_never_comes_ends_with_one_line_at_the_timeout(processes):
    """What `ct5x train` and `ct5x sweep run` call to join, alone, without the frameworks."""
    alone = processes.start("alone", [sys.executable, "-c", JOIN_ALONE, f"localhost:{_port()}"],
                            devices=2)
    started = time.monotonic()
    code, _, err = processes.wait(alone, timeout=120)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "did not all join" in err and "--initialization_timeout=3 s" in err
    assert time.monotonic() - started < 60


def test_t5x_process_flags_on_train_and_sweep_run():
    from ct5x import train
    from ct5x.cli import build_parser
    from ct5x.process_flags import ProcessFlags, from_namespace

    assert not train.parse_flags(["--gin_file=x.gin"]).processes.wanted
    given = ["--multiprocess_gpu", "--coordinator_address=host:1234", "--process_count", "4",
             "--process_index=3", "--initialization_timeout=9"]
    expected = ProcessFlags(True, "host:1234", 4, 3, 9)
    assert train.parse_flags(["--gin_file=x.gin", *given]).processes == expected
    args = build_parser().parse_args(["sweep", "run", "x.gin", *given])
    assert from_namespace(args) == expected


@pytest.mark.parametrize("given, message", [
    (["--process_count=2"], "--process_count needs --multiprocess_gpu"),
    (["--multiprocess_gpu", "--process_count=0"], "--process_count=0: must be an integer >= 1"),
    (["--multiprocess_gpu", "--process_index=x"], "--process_index=x: must be an integer >= 0"),
    (["--multiprocess_gpu", "--process_count=2", "--process_index=2"],
     "--process_index=2 is not below --process_count=2"),
])
def test_bad_process_flags_are_named(given, message, capsys):
    from ct5x import train

    assert train.main(["--gin_file=runs/finetune.gin", *given]) == 2
    assert capsys.readouterr().err.strip() == f"ct5x train: error: {message}"


JOIN_AND_LEAVE = """
import sys
from ct5x import multihost
multihost.POLL_S = 0  # the failure watcher is inside JAX's client almost all the time
flags = multihost.ProcessFlags(True, sys.argv[1], process_count=2, process_index=int(sys.argv[2]))
multihost.start(flags, "ct5x train")
"""


def test_processes_that_leave_while_the_failure_watcher_polls_exit_cleanly(processes):
    """The watcher thread is stopped before the interpreter finalizes: left running inside a call
    into JAX's client, glibc's unwinding of it aborted the process after its work was done (with
    a watcher that never pauses, 14 of 20 pairs aborted before the fix, 0 of 20 after)."""
    for attempt in range(3):
        address = f"localhost:{_port()}"
        pair = [processes.start(f"leave{attempt}.{index}",
                                [sys.executable, "-c", JOIN_AND_LEAVE, address, str(index)],
                                devices=1) for index in (0, 1)]
        for code, _, err in (processes.wait(started, timeout=120) for started in pair):
            assert code == 0 and "not rethrown" not in err, err[-2000:]
