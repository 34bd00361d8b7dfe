"""The one description of the machine a measurement ran on (``bench`` reports, ``lm-eval`` comparisons).

``describe()`` returns the facts as a dict; ``summary()`` is the one line ``scorebench bench`` prints;
``versions()`` the installed versions of some packages.
"""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def proc_field(path: str, key: str) -> int | None:
    """The first number on the line of ``path`` (a /proc file) that starts with ``key``; None where it cannot be
    read (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_gb(peak: bool = False) -> float | None:
    """This process's resident memory in GB (``VmRSS``), or its peak so far (``VmHWM``: the high-water mark over
    the process's life, sampled by the kernel, so no short spike between two reads is missed); None off Linux."""
    kb = proc_field("/proc/self/status", "VmHWM:" if peak else "VmRSS:")
    return None if kb is None else round(kb / 1e6, 3)


def basics() -> dict:
    """Platform, architecture, CPU model and count: what a run directory's ``config.json`` records as ``machine``
    (the model because a step's time and bf16's numerics differ between, say, an EPYC and a Xeon with AMX)."""
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu": cpu_model(),
            "cpus": os.cpu_count()}


def describe() -> dict:
    """``basics()`` (processor: the CPU's own name where ``platform`` knows it), CPU model, Python, torch (version,
    CPU capability, threads), load average: what ``bench`` and ``lm-eval`` reports record."""
    import torch  # here, not at the top: a module that only wants the platform need not load torch
    return {**basics(), "processor": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}


def summary(d: dict | None = None) -> str:
    """One line: ``CPU model, N CPUs, torch V (capability), T threads, load average L at start``."""
    d = d or describe()
    return (f"{d['cpu']}, {d['cpus']} CPUs, torch {d['torch']} ({d['cpu_capability']}), "
            f"{d['torch_threads']} threads, load average {d['load_average']:.2f} at start")


def versions(packages) -> dict:
    """``{package: version}`` for those of ``packages`` that are installed."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
