"""A real one-node SLURM cluster for tests: Debian's slurm-wlm and munge (installed if missing),
munged, slurmctld and slurmd started from a minimal slurm.conf in a temporary folder, and stopped
by their pids.

Nothing outside that folder is read or written: the daemons get the configuration file by `-f`
and clients by SLURM_CONF, munged its own key and socket, and the ports are free ones (not
SLURM's defaults), so a SLURM already set up on the machine is never touched.
"""

import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time

PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue")
CONFIG = """\
ClusterName=ct5xtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=ct5x Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def install() -> str | None:
    """Installs slurm-wlm and munge with apt-get if a program is missing; None when all are
    there, else one line saying why they cannot be."""
    if all(shutil.which(program) for program in PROGRAMS):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm and munge are missing and cannot be installed here (needs root and apt)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            return f"`{' '.join(command[:2])}` failed: {last}"
    missing = [program for program in PROGRAMS if not shutil.which(program)]
    return f"installed, but {', '.join(missing)} still missing" if missing else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """munged + slurmctld + slurmd for one node with this machine's CPUs, in `root`."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.config = root / "slurm.conf"
        self.pid_files = [root / "munged.pid", root / "slurmctld.pid", root / "slurmd.pid"]
        self.env = dict(os.environ, SLURM_CONF=str(self.config))

    def start(self, timeout: float = 60) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        (self.root / "plugstack.conf").write_text("")
        self._daemon(["munged", f"--key-file={key}", f"--socket={self.root}/munge.socket",
                      f"--pid-file={self.pid_files[0]}", f"--log-file={self.root}/munged.log",
                      f"--seed-file={self.root}/munged.seed", "--force"])
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.config.write_text(CONFIG.format(
            node=self.node, root=self.root, cpus=os.cpu_count(), memory_mb=memory_mb // 2,
            ctld_port=_free_port(), slurmd_port=_free_port(),
            user=pathlib.Path("/proc/self").owner()))
        self._daemon(["slurmctld", "-f", str(self.config), "-i"])
        self._daemon(["slurmd", "-f", str(self.config)])
        deadline = time.monotonic() + timeout
        while "idle" not in self.run("sinfo", "-h", "-o", "%t", check=False):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SLURM node never became idle: {self.logs()}")
            time.sleep(0.5)

    def _daemon(self, command: list[str]) -> None:
        """Starts a daemon that forks into the background and writes its pid file."""
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=60)

    def run(self, *command: str, check: bool = True) -> str:
        """A SLURM client command against this cluster; its standard output."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                timeout=60, check=False)
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
        return result.stdout

    def job_state(self, job: str) -> tuple[str, str]:
        """(JobState, Reason) of a job, e.g. ('PENDING', 'BeginTime')."""
        text = self.run("scontrol", "show", "job", job)
        state = re.search(r"JobState=(\S+)", text)
        reason = re.search(r"Reason=(\S+)", text)
        return (state.group(1) if state else "", reason.group(1) if reason else "")

    def logs(self) -> str:
        return " | ".join(
            f"{name}: {(self.root / name).read_text()[-1500:]}"
            for name in ("slurmctld.log", "slurmd.log") if (self.root / name).is_file())

    def stop(self) -> None:
        """Cancels every job of this cluster, then stops the daemons it started, by pid."""
        if self.config.is_file():
            self.run("scancel", "--full", f"--user={os.getuid()}", check=False)
            time.sleep(1)
        for pid_file in reversed(self.pid_files):
            if not pid_file.is_file():
                continue
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not pathlib.Path(f"/proc/{pid}").is_dir() or _zombie(pid):
                    break
                time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
