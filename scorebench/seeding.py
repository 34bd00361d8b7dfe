"""Seeds: ``derive_seed`` lives in ``scorebench.api.seeding`` (the bottom layer); this name is kept for old imports."""
from .api.seeding import derive_seed  # noqa: F401
