"""``python -m gpuhybrid.bench``: the same as the ``gpuhybrid-bench`` command."""
import sys

from .cli import main

sys.exit(main())
