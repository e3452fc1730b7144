"""A real single-node SLURM cluster for the tests, started by hand (root, no systemd).

Debian's ``slurm-wlm`` and ``munge`` packages are enough: ``SlurmCluster(root).start()``
writes ``slurm.conf``, ``gres.conf`` and ``cgroup.conf`` into ``root``, starts its own
``munged`` (own key and socket), ``slurmctld`` and ``slurmd`` in the foreground as child
processes (so their PIDs are known), and waits until ``sinfo`` shows the node idle.
``stop()`` cancels the cluster's jobs and ends every process it started, by PID.

The node has ``CPUs=2`` and one GPU GRES backed by a plain file, so ``--gpus=1`` jobs are
scheduled one at a time although there is no real GPU. There is no accounting database:
status checks must use ``squeue`` (``MinJobAge`` keeps finished jobs visible to it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "scontrol")
NODE = "node1"
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


def missing_programs() -> list[str]:
    """The SLURM/munge programs that are not installed (empty when all are)."""
    found = []
    for prog in DAEMONS + CLIENTS:
        if shutil.which(prog) is None and not Path("/usr/sbin", prog).exists():
            found.append(prog)
    return found


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None and Path("/usr/sbin", name).exists():
        path = str(Path("/usr/sbin", name))
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install slurm-wlm munge)")
    return path


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the process that started
    the daemon dies, so that even a test run killed with SIGKILL (where no finalizer runs)
    leaves no daemon behind. Linux only; elsewhere stop() is the only cleanup."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free right now on 127.0.0.1."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _total_memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 4096


class SlurmCluster:
    def __init__(self, root: Path, cpus: int = 2, gpus: int = 1, min_job_age: int = 300):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.gpus = gpus
        self.min_job_age = min_job_age
        self.conf = self.root / "etc" / "slurm.conf"
        self.log_dir = self.root / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self.gpus_indexed = False  # True when jobs see CUDA_VISIBLE_DEVICES (char device)
        self.memory_mb = max(1024, int(_total_memory_mb() * 0.8))

    # --- environment for clients -------------------------------------------------------
    def env(self, base: dict | None = None) -> dict:
        """An environment whose SLURM clients talk to this cluster: SLURM_CONF set, and
        ``<root>/bin`` (client wrappers that set SLURM_CONF) first on PATH, because the
        Snakemake job-step plugin strips SLURM_* variables before its nested ``srun``; a
        real cluster finds its config in /etc/slurm instead."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))]:
            if key != "SLURM_CONF":
                del env[key]
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, check=check, timeout=timeout
        )

    # --- configuration -----------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("etc", "log", "state", "spool", "munge", "run", "dev"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o711)
        ctld_port, slurmd_port = _free_ports(2)
        self.ctld_port, self.slurmd_port = ctld_port, slurmd_port
        gpu_files = [self._fake_gpu(i) for i in range(self.gpus)]
        host = socket.gethostname()
        r = self.root
        self.conf.write_text(
            f"""# written by tests/slurm_cluster.py
ClusterName=askdaggertest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.socket.2
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge={self.min_job_age}
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmdTimeout=60
SlurmctldTimeout=60
MessageTimeout=20
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:{self.gpus} State=UNKNOWN
PartitionName=cpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={NODE} Default=NO MaxTime=INFINITE State=UP
"""
        )
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        for client in CLIENTS + ("srun", "sacct", "salloc"):
            real = shutil.which(client, path=os.defpath + ":/usr/bin:/usr/sbin")
            if real is None:
                continue
            wrapper = bindir / client
            wrapper.write_text(f'#!/bin/sh\nexport SLURM_CONF="{self.conf}"\nexec {real} "$@"\n')
            wrapper.chmod(0o755)
        gres_lines = [f"NodeName={NODE} Name=gpu File={dev}" for dev in gpu_files]
        (self.root / "etc" / "gres.conf").write_text("AutoDetect=off\n" + "\n".join(gres_lines) + "\n")
        (self.root / "etc" / "cgroup.conf").write_text(
            "# no cgroups: proctrack/linuxproc and task/none do not use them\nCgroupPlugin=autodetect\n"
        )

    def _fake_gpu(self, i: int) -> Path:
        """A stand-in for /dev/nvidia<i>: a null character device where mknod is allowed
        (slurmd then exports CUDA_VISIBLE_DEVICES/SLURM_JOB_GPUS as on a real GPU node),
        otherwise a plain file (the GRES is still counted and scheduled, without indices)."""
        dev = self.root / "dev" / f"fakegpu{i}"
        if not dev.exists():
            try:
                os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            except OSError:
                dev.write_text("a plain file standing in for a GPU device\n")
        self.gpus_indexed = stat.S_ISCHR(dev.stat().st_mode)
        return dev

    # --- processes ---------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict) -> None:
        log = open(self.log_dir / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def start(self, timeout: float = 60) -> "SlurmCluster":
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        self.write_config()
        key = self.root / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:  # what `mungekey --create` writes, owner-only
            fh.write(os.urandom(1024))
        env = self.env()
        m = self.root / "munge"
        self._spawn("munged", [
            _program("munged"), "--foreground", "--force",
            f"--socket={m}/munge.socket.2", f"--key-file={key}",
            f"--pid-file={m}/munged.pid", f"--seed-file={m}/munged.seed",
            f"--log-file={self.log_dir}/munged.log",
        ], env)
        self._wait_for(lambda: (m / "munge.socket.2").exists(), 20, "munged to open its socket")
        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i", "-f", str(self.conf)], env)
        self._wait_for(lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
                       timeout, "slurmctld to answer scontrol ping")
        self._spawn("slurmd", [_program("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)], env)
        self._wait_for(self.node_idle, timeout, "the node to become idle in sinfo")

    def node_idle(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir}")
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split()
        return len(out) >= 2 and out[1] == "idle"

    def _wait_for(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self.log_tail()
                    )
            if cond():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}:\n" + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # --- jobs --------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        """Jobs known to slurmctld (pending, running, and finished within MinJobAge), as
        the key=value fields of ``scontrol show job`` (JobId, JobName, JobState, Partition,
        TresPerJob, NodeList, StdOut, Comment, ...)."""
        out = self.run("scontrol", "show", "job", "-o", check=False).stdout
        rows = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                rows.append(dict(re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", line)))
        return rows

    def job_steps_pids(self) -> list[int]:
        """PIDs of slurmstepd processes that belong to this cluster (by their spool dir)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
                if b"slurmstepd" not in cmd:
                    continue
                env = (proc / "environ").read_bytes()
            except OSError:
                continue
            if str(self.conf).encode() in env or str(self.root).encode() in cmd:
                pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        """Cancel all jobs and end every process this cluster started (by PID)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "-u", "root", check=False, timeout=15)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and (
                    self.job_steps_pids()
                    or any(j.get("JobState") in ACTIVE_STATES for j in self.jobs())
                ):
                    time.sleep(0.5)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for pid in self.job_steps_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
