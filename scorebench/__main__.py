"""``python -m scorebench``: the CLI without an installed entry point (a checkout on PYTHONPATH)."""
import sys

from .cli import main

sys.exit(main())
