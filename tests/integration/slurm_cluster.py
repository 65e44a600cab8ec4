"""A real single-node Slurm for the tests: munged + slurmctld + slurmd on localhost, as root, with every
file (key, sockets, state, logs, slurm.conf) in a temporary folder, and `SLURM_CONF` pointing the client
commands (sbatch, squeue, scancel, sinfo) at it.

Debian's `slurm-wlm` and `munge` provide the binaries (`.ci/run` installs them). Without them, or not as
root, the fixture skips with the reason; once the binaries are there, a cluster that does not come up is
a failure with the daemons' logs, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SlurmCluster:
    folder: Path
    conf: Path
    env: dict[str, str]  # os.environ plus SLURM_CONF: pass to every client command

    def run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.folder / name
            text = path.read_text(errors="replace")[-3000:] if path.exists() else "(none)"
            parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts)


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [
        name for name in BINARIES if shutil.which(name) is None and not Path("/usr/sbin", name).exists()
    ]
    if absent:
        return f"Slurm/munge binaries missing ({', '.join(absent)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the single-node Slurm fixture starts munged/slurmctld/slurmd as root; not root here"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _conf(folder: Path, cpus: int, memory_mb: int) -> str:
    return f"""ClusterName=harness-ci
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket
StateSaveLocation={folder}/ctld
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=300
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster(folder: Path) -> tuple[SlurmCluster, list[subprocess.Popen[bytes]]]:
    for sub in ("ctld", "spool"):
        (folder / sub).mkdir(parents=True)
    folder.chmod(0o755)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cpus = os.cpu_count() or 1
    memory_mb = max(512, (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2**20 // 2)
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, cpus, memory_mb))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[subprocess.Popen[bytes]] = []
    munged = [
        _binary("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={folder}/munge.socket",
        f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log", f"--seed-file={folder}/munge.seed",
    ]  # fmt: skip
    started.append(subprocess.Popen(munged, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    _wait(lambda: (folder / "munge.socket").exists(), "munged's socket", started, folder)
    started.append(
        _daemon([_binary("slurmctld"), "-D", "-i", "-f", str(conf)], env, folder / "slurmctld.out")
    )
    started.append(
        _daemon([_binary("slurmd"), "-D", "-N", "localhost", "-f", str(conf)], env, folder / "slurmd.out")
    )
    cluster = SlurmCluster(folder, conf, env)

    def idle() -> bool:
        done = cluster.run("sinfo", "-h", "-N", "-o", "%t", timeout=10)
        return done.returncode == 0 and done.stdout.strip() in ("idle", "mix")

    _wait(idle, "the node to be idle in sinfo", started, folder)
    return cluster, started


def _daemon(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(ready: object, what: str, started: list[subprocess.Popen[bytes]], folder: Path) -> None:
    assert callable(ready)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        dead = [p.args for p in started if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = SlurmCluster(folder, folder / "slurm.conf", {}).logs()
            out = "\n".join(p.read_text(errors="replace")[-2000:] for p in folder.glob("*.out"))
            stop_cluster(started)
            raise RuntimeError(f"Slurm did not start: waiting for {what}; exited: {dead}\n{logs}\n{out}")
        time.sleep(0.5)


def stop_cluster(started: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(started):
        if process.poll() is None:
            process.terminate()
    for process in reversed(started):
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # A short path: munged's and slurmd's socket paths must fit in sun_path (108 bytes).
    folder = Path(f"/tmp/harness-slurm-{os.getpid()}")
    shutil.rmtree(folder, ignore_errors=True)
    cluster, started = start_cluster(folder)
    try:
        yield cluster
    finally:
        cluster.run("scancel", "--user=root", timeout=30)
        stop_cluster(started)
        shutil.rmtree(folder, ignore_errors=True)
