"""``python -m cimfs_cffi``: the ``cimfs`` command (signals are handled from here on; see
``_cimfs_launcher``, the console script's entry point)."""
import sys

import _cimfs_launcher

sys.exit(_cimfs_launcher.main())
