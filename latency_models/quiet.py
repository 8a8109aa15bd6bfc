"""Keep a native library's chatter off the terminal: litert-torch prints a progress line per
conversion stage, the MLIR exporter and LiteRT log from C++ ("Created TensorFlow Lite XNNPACK
delegate"), all straight to file descriptors 1 and 2. ``quiet_fds`` captures them and replays the
last of them on stderr only when the block fails (where they are the diagnosis)."""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile

REPLAY_LINES = 40  # converter lines shown when a conversion fails


@contextlib.contextmanager
def quiet_fds():
    """Send what is written to fds 1 and 2 (from Python or C++) to a temporary file while inside;
    if the block fails, the last ``REPLAY_LINES`` of it go to stderr before the error propagates."""
    with tempfile.TemporaryFile() as sink, \
            io.TextIOWrapper(open(sink.fileno(), "wb", closefd=False), write_through=True) as text:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        failed = False
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            # Python code writes to sys.stdout / sys.stderr, which need not be fds 1 and 2 (pytest,
            # a notebook): send those to the sink too
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        except Exception:
            failed = True
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            ctypes.CDLL(None).fflush(None)  # C stdio's own buffer (libc), which Python's flush does not reach
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if failed:
                sink.seek(0)
                tail = sink.read().decode(errors="replace").splitlines()[-REPLAY_LINES:]
                if tail:
                    print("the converter's last output:", *tail, sep="\n  ", file=sys.stderr)
