"""The grid on a real SLURM cluster (`make test-slurm`): the scripts `ct5x sweep slurm` writes run
a tiny grid as a job array on a one-node slurmctld + slurmd; one array task runs as 2 SLURM tasks
(`srun`, MULTIHOST: JAX joins the 2 processes from SLURM's environment), is requeued while it runs
(SIGTERM: both processes save a checkpoint at the same step and stop) and resumes from that
checkpoint; the report job runs after the array and reports.

Skipped in `make test` (it installs Debian packages and starts daemons); `make test-slurm` sets
CT5X_SLURM_TEST=1.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
from slurm_cluster import Cluster, install
from training_run import FAST_COMPILE, write_experiment

from ct5x.cli import main
from ct5x.sweep.plan import load_runs

pytestmark = pytest.mark.skipif(os.environ.get("CT5X_SLURM_TEST") != "1",
                                reason="a real SLURM cluster: run by `make test-slurm`")
STEPS = 20
FOLDS = (0, 1)
TWO_TASKS = 1  # the array index (= fold) of the 2-process run, the one requeued


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = install()
    if why is not None:
        pytest.skip(f"no SLURM: {why}")
    started = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        started.start()
        yield started
    finally:
        started.stop()


def _wait(what: str, ready, cluster: Cluster, timeout: float = 400, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (found := ready()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {cluster.logs()}"
        time.sleep(every)
    return found


def test_grid_runs_requeues_and_reports_on_slurm(cluster, synthetic_inputs, tmp_path):
    data_dir, checkpoint = synthetic_inputs
    experiment = write_experiment(
        tmp_path / "slurm_tiny.gin", [{"name": "tiny", "checkpoint": str(checkpoint)}],
        list(FOLDS), DATA_DIR=str(data_dir), TRAIN_STEPS=STEPS, EVAL_PERIOD=10,
        CHECKPOINT_PERIOD=5, EVAL_EXAMPLES=8, TASK_FEATURE_LENGTHS={"inputs": 32, "targets": 16})
    runs_dir = tmp_path / "runs"
    binding = f"--gin.RUNS_DIR='{runs_dir}'"
    assert main(["sweep", "slurm", str(experiment), "--out", str(tmp_path / "launch"),
                 "--cpus", "1", "--mem", "500M", "--gpus", "0", "--time", "00:20:00",
                 "--parallel", "1", binding]) == 0
    env = dict(cluster.env, PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}",
               XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}",
               JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="3", HF_HUB_OFFLINE="1")
    submitted = subprocess.run(["bash", str(tmp_path / "launch" / "submit.sh")], cwd=tmp_path,
                               env=env, capture_output=True, text=True, check=True).stdout
    array = re.search(r"submitted run array (\d+)", submitted).group(1)
    report = re.search(r"Submitted batch job (\d+)", submitted).group(1)
    # The second array task, pending behind the --parallel 1 throttle, becomes 2 SLURM tasks.
    cluster.run("scontrol", "update", f"JobId={array}_{TWO_TASKS}", "NumTasks=2", "NumCPUs=2")

    _, runs = load_runs(str(experiment), [binding[len("--gin."):]])
    requeued = pathlib.Path(runs[TWO_TASKS].model_dir)
    task = f"{array}_{TWO_TASKS}"
    _wait("a checkpoint of the 2-process run", lambda: any(requeued.glob("checkpoint_*")),
          cluster)
    assert cluster.job_state(task)[0] == "RUNNING"
    cluster.run("scontrol", "requeue", task)
    # A requeued job waits about two minutes before it may start again; let it start now.
    _wait("the requeued task to pend", lambda: cluster.job_state(task) == (
        "PENDING", "BeginTime"), cluster)
    cluster.run("scontrol", "update", f"JobId={task}", "StartTime=now")

    _wait("the report job", lambda: cluster.job_state(report)[0] in (
        "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), cluster, timeout=600, every=1)
    logs = tmp_path / "logs"
    report_log = (logs / f"ct5x-slurm_tiny-report-{report}.out").read_text()
    assert cluster.job_state(report)[0] == "COMPLETED", report_log[-3000:]

    for run in runs:
        record = json.loads((pathlib.Path(run.model_dir) / "run.json").read_text())
        assert record["finished"] and record["latest_step"] == STEPS, run.model_dir
    log = (logs / f"ct5x-slurm_tiny-{task}.out").read_text()  # both attempts
    assert log.count("2 processes joined") == 2, log[-3000:]
    stopped = re.search(r"stopped: preempted at step (\d+): checkpoint_\1 saved", log)
    assert stopped, log[-3000:]
    assert f"(step {stopped.group(1)})" in log.split("resuming from", 1)[1].splitlines()[0]
    assert "Restarts=1" in cluster.run("scontrol", "show", "job", task)
    for step_dir in requeued.glob("checkpoint_*"):
        assert {p.name for p in step_dir.glob("train_ds-*")} == {
            "train_ds-000-of-002.json", "train_ds-001-of-002.json"}

    report_dir = runs_dir / "slurm_tiny" / "report"
    summary = json.loads((report_dir / "report.json").read_text())
    assert "tiny" in json.dumps(summary) and (report_dir / "report.md").is_file()
    chosen = [json.loads(line) for line in
              (runs_dir / "slurm_tiny" / "learning_rates.jsonl").read_text().splitlines()]
    assert [choice["learning_rate"] for choice in chosen] == [0.01]
    assert f"report: {report_dir}" in report_log
