"""How the command line ends: bad input gets one line naming the problem and exit code 2, before any model loads
or file is written; an I/O error while working (disk full) gets one line and exit code 1."""
from __future__ import annotations

import os
import sys
from typing import Callable

from tqdm.auto import tqdm

from ..dist import DistError
from ..engines.vllm import EngineUnavailable
from ..jobs import RunsFailed
from ..models import ModelError
from ..registry import UnknownName
from ..rundir import RunDirError
from ..tasks.base import DataError

EXIT_USAGE = 2
"""Bad input: a flag, task or method argument, preset, model or output path (caught before any work)."""
EXIT_IO = 1
"""An I/O error while working (disk full): one line, and the run directory is left resumable."""


class CLIError(ValueError):
    pass


USAGE_ERRORS = (CLIError, UnknownName, ModelError, RunDirError, DataError, ValueError, FileNotFoundError,
                EngineUnavailable)


def handle(cmd: str, work: Callable[[], int]) -> int:
    """Run subcommand ``cmd``'s ``work`` and turn the errors a user can cause or meet into one line and an exit
    code (``SCOREBENCH_DEBUG=1`` re-raises them with their traceback)."""
    try:
        return work()
    except USAGE_ERRORS as e:
        if os.environ.get("SCOREBENCH_DEBUG"):
            raise
        print(f"scorebench: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # disk full, read-only file system, ... while working: not the user's input
        if os.environ.get("SCOREBENCH_DEBUG"):
            raise
        where = f" ({e.filename})" if e.filename else ""
        hint = ("; finished episodes are saved — fix it and rerun the same command to resume"
                if cmd in ("run", "reproduce") else "")
        tqdm.write(f"scorebench: error: {e.strerror or e}{where}{hint}", file=sys.stderr)  # on its own line
        return EXIT_IO
    except RunsFailed as e:  # reproduce --jobs: some runs failed, the others finished; each has its log
        print(f"scorebench: error: {e}", file=sys.stderr)
        return 1
    except DistError as e:  # another process of a multi-process run is gone: this one stops too, saying why
        print(f"scorebench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scorebench: interrupted; finished episodes are saved — rerun the same command to resume",
              file=sys.stderr)
        return 130
