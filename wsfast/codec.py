"""The frame codec: the compiled extension when it is built, else the pure-Python twin.

``COMPILED`` tells which one runs. ``WSFAST_PURE_PYTHON=1`` in the environment at
import forces the pure-Python path even when the extension is present.
"""

from __future__ import annotations

import os

if os.environ.get("WSFAST_PURE_PYTHON", "") not in ("", "0"):
    from ._codec_py import *  # noqa: F403
    from ._codec_py import __all__  # noqa: F401
else:
    try:
        from ._codec import *  # noqa: F403
        from ._codec import __all__  # noqa: F401
    except ImportError:  # not built: no compiler at install time, or WSFAST_NO_EXTENSIONS=1
        from ._codec_py import *  # noqa: F403
