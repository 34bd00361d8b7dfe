"""``python -m scorebench.cli``: the same command line as ``python -m scorebench``."""
import sys

from . import main

sys.exit(main())
