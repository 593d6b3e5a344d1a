"""Child processes that take Ctrl-C as they would from a terminal, however the suite itself was started."""

from __future__ import annotations

import signal


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child a test sends SIGINT (Ctrl-C). A non-interactive shell starts a background
    command (``make test &``, ``nohup ... &`` in a script) with SIGINT ignored, every process below inherits
    that, and a Python that starts with SIGINT ignored installs no KeyboardInterrupt handler: the test's
    Ctrl-C would do nothing. Reset it to the default a terminal gives, so the child's Python installs its
    handler (POSIX; ``tests/repro/test_tracking_server.py``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
