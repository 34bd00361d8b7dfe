"""What a sandboxed program may use (``SandboxLimits``) and what came of it (``SandboxResult``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SandboxLimits:
    wall_s: float = 10.0
    """Wall-clock limit in seconds for the whole process tree; on expiry everything is SIGKILLed (status timeout)."""
    cpu_s: int = 10
    """RLIMIT_CPU in seconds, per process (SIGXCPU, then SIGKILL one second later)."""
    memory_mb: int = 1024
    """RLIMIT_AS (virtual address space) in MiB, per process; also the size cap of the sandbox's /tmp tmpfs."""
    max_procs: int = 64
    """RLIMIT_NPROC: processes + threads the sandbox's uid may have at once (fork bombs hit it)."""
    max_output_bytes: int = 65536
    """Captured bytes kept per stream (head); a 4 KiB tail is kept too. The rest is drained and discarded."""


@dataclass
class SandboxResult:
    passed: bool
    """Exit code 0 and the sentinel was the last line of stdout: every test ran."""
    status: str
    """"passed", "failed" (non-zero exit, exception, early exit), "timeout" (wall or CPU limit), "error" (sandbox
    failed)."""
    stdout: str
    """Captured stdout, sentinel removed; head + tail with a truncation marker when over the cap."""
    stderr: str
    """Captured stderr (same capping)."""
    returncode: int | None
    """The sandbox process's exit code (negative: killed by that signal); None if it never started."""
    wall_s: float
    """Wall time of this program, including sandbox start-up."""
    truncated: bool = False
    """True when stdout or stderr exceeded max_output_bytes."""
