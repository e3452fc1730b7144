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


def _interrupted(monkeypatch, module, function, exc):
    def interrupt(*args, **kwargs):
        raise exc

    monkeypatch.setattr(module, function, interrupt)


def test_a_command_that_keeps_nothing_says_so(monkeypatch, tmp_path, capsys):
    from askdagger_mnist.cli import fetch_results

    _interrupted(monkeypatch, fetch_results, "run", KeyboardInterrupt())
    assert fetch_results.main(["pick", "--staging", str(tmp_path), "--mode", "sensitivity",
                               "--variant", "sag", "--s-des", "0.9", "--rep", "0",
                               "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: stopped by Ctrl-C; nothing half-done was kept: run the command again.")


def test_download_mnist_interrupted_says_nothing_partial_is_left_where(monkeypatch, tmp_path, capsys):
    from askdagger_mnist.cli import download_mnist

    _interrupted(monkeypatch, download_mnist, "prepare_mnist", KeyboardInterrupt())
    assert download_mnist.main(["--root", str(tmp_path)]) == 130
    raw = tmp_path / "MNIST" / "raw"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: interrupted; nothing partial is left in {raw}: run again to finish.")
    _interrupted(monkeypatch, download_mnist, "prepare_mnist", common.Stopped(signal.SIGTERM))
    assert download_mnist.main(["--root", str(tmp_path)]) == 143


def test_train_stopped_says_it_resumes_from_its_checkpoint_not_that_nothing_was_kept(
        monkeypatch, capsys):
    from askdagger_mnist.cli import train

    _interrupted(monkeypatch, train, "run", common.Stopped(signal.SIGTERM))
    assert train.main(["--mode", "sensitivity", "--s-des", "0.9", "--rep", "0",
                       "--data-root", "nowhere", "--out", "nowhere/run"]) == 143
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: stopped by SIGTERM;") and "resumes from its last checkpoint" in line
    assert "nothing half-done" not in line
