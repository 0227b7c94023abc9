"""``python -m cimfs_cffi``: the ``cimfs`` command."""
import sys

from .cli import main

sys.exit(main())
