"""Methods. ``Method`` and the RunContext contract live in ``scorebench.api.method``; this module keeps the old
import path, where ``RunContext`` is the runner's own (``scorebench.context.HarnessContext``), which can load the
run's model and carve the train split."""
from .api.method import Method  # noqa: F401
from .context import HarnessContext as RunContext  # noqa: F401
