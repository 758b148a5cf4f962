"Shared fixtures: one small avatar cache (1,000 faces, 64 px) built once per test run."
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests never touch the user's own cache: `make test` sets CRVAE_DATA, and a bare `pytest` uses the repo-local one.
os.environ.setdefault('CRVAE_DATA', str(ROOT/'.cache'/'crvae-test'))

import torch  # noqa: E402
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='run tests marked slow')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'): return
    skip = pytest.mark.skip(reason='slow: pass --runslow to run')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)


@pytest.fixture(scope='session')
def faces_1k():
    "The shared 1,000-face, 64 px avatar set (built once if missing)."
    from crvae.data import load_avatars
    return load_avatars(n=1000, size=64, progress=False)


@pytest.fixture
def run_cli(capsys):
    "Run `crvae ARGS...` in-process; returns (exit code, stdout, stderr)."
    from crvae.core import main
    def run(*argv):
        try: code = main([str(a) for a in argv])
        except SystemExit as e: code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture(autouse=True)
def _signal_handlers_given_back():
    "Every test gives back the Ctrl-C and SIGTERM handlers it found (a leaked handler would swallow a later test's Ctrl-C)."
    import signal
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = [signal.Signals(s).name for s, h in before.items() if signal.getsignal(s) is not h]
    for s, h in before.items():
        if h is not None: signal.signal(s, h)
    assert not changed, f"the test left these signal handlers changed: {changed}"


@pytest.fixture
def ctrl_c_raises():
    "Ctrl-C raises KeyboardInterrupt, as in a terminal (a shell's background job, e.g. `make test &`, starts with it ignored)."
    import signal
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
