"""How many CPUs a CPU quota lets this process use: the cgroup bandwidth limit that
``docker run --cpus``, Kubernetes' CPU limits and systemd's ``CPUQuota=`` set. Such a limit
leaves the CPU affinity as it is (every core of the host still listed), so the CPU core slots
(cpu_slots.py) would let as many jobs run as there are host cores, and they would time-share
the quota; with it, the slots take only that many of the cores.

cgroup v2: ``cpu.max`` ("max 100000", or "<quota> <period>" in microseconds); v1:
``cpu.cfs_quota_us`` (-1 without a limit) and ``cpu.cfs_period_us``, under the ``cpu``
controller's mount. The process's cgroup is read from ``/proc/self/cgroup``, and every level
from it up to the root is looked at: the smallest limit binds. A quota of 1.5 CPUs gives 2
(the whole quota is used; the two jobs then share the half). Standard library only.
"""

from __future__ import annotations

import math
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def quota_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """The CPUs the tightest CPU quota over this process allows (at least 1), or None where
    there is none or it cannot be read (not Linux, no cgroup file system)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2, the unified hierarchy
            limits += _limits(cgroup_root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1, the cpu controller
            for name in (controllers, "cpu", "cpu,cpuacct"):  # where distributions mount it
                mount = cgroup_root / name
                if mount.is_dir():
                    limits += _limits(mount, path, _v1_limit)
                    break
    return max(1, math.ceil(min(limits) - 1e-9)) if limits else None


def _limits(mount: Path, path: str, read) -> list[float]:
    """The CPU limits found at ``mount`` + ``path`` and at every level above it."""
    folder = mount / path.strip("/")
    found = []
    while True:
        limit = read(folder)
        if limit is not None:
            found.append(limit)
        if folder == mount or mount not in folder.parents:
            return found
        folder = folder.parent


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None
