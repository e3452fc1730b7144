"""cli/common.py: every command's SIGTERM handling and its one-line endings."""

from __future__ import annotations

import signal

from askdagger_mnist.cli import common


def test_sigterm_s_handler_is_put_back_even_when_python_did_not_set_the_previous_one(monkeypatch):
    """signal.signal returns None for a handler set outside Python: there is nothing to put
    back then, but _stop must not stay (it would raise Stopped outside any run_command)."""
    real_signal = signal.signal
    original = signal.getsignal(signal.SIGTERM)
    calls = []

    def signal_as_if_set_from_c(signum, handler):
        previous = real_signal(signum, handler)
        calls.append(handler)
        return None if len(calls) == 1 else previous

    monkeypatch.setattr(signal, "signal", signal_as_if_set_from_c)
    try:
        with common.sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) is common._stop
        assert signal.getsignal(signal.SIGTERM) is not common._stop
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        real_signal(signal.SIGTERM, original)


def test_sigterm_s_previous_python_handler_is_put_back():
    def mine(signum, frame):
        pass

    original = signal.signal(signal.SIGTERM, mine)
    try:
        with common.sigterm_raises():
            assert signal.getsignal(signal.SIGTERM) is common._stop
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, original)
