"""Which process runs a run: tags that name it (machine, pid, and a start time that tells a
reused pid apart), and whether it is gone. The MLflow sink sets them at a run's start;
`repair` and `sync` read them to tell a run whose processes were killed from a live one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST_TAG, PID_TAG, START_TAG = "lrlab.host", "lrlab.pid", "lrlab.process_start"


def process_tags(pid=None):
    """The tags that say which process runs a run (this one by default)."""
    pid = os.getpid() if pid is None else pid
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), START_TAG: _started(pid) or ""}


def stat_fields(pid):
    """The fields of Linux's `/proc/<pid>/stat` after the command name (state, ppid, ...,
    so field N of proc(5) is item N - 3), or None where unreadable (no such process, no
    /proc). The name is in parentheses and may hold spaces, hence the split at the last `)`."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _started(pid):
    """`boot id/start time in clock ticks` of process `pid` on Linux (None where unknown):
    equal only for the same process, even after the pid is reused or the machine restarts."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        return None
    return f"{boot}/{fields[19]}"


def process_gone(tags):
    """True when the run's training process ran on this machine and no longer exists;
    None when that cannot be told from here (another machine, or no process tags)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG):
        return None
    pid = int(tags[PID_TAG])
    started = _started(pid)
    if started is not None and tags.get(START_TAG):
        return started != tags[START_TAG]  # another process has the pid now, or none
    try:  # no /proc here, or no such process: ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False  # exists (without a start time to compare, taken to be the run's)
