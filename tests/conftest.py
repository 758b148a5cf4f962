"Shared fixtures: one small avatar cache (1,000 faces, 64 px) built once per test run."
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests never touch the user's own cache: `make test` sets CRVAE_DATA, and a bare `pytest` uses the repo-local one.
os.environ.setdefault('CRVAE_DATA', str(ROOT/'.cache'/'crvae-test'))
# Runs skip their matplotlib plots (about a second each, over hundreds of short runs); test_training.py draws them.
os.environ.setdefault('CRVAE_PLOTS', '0')

import torch  # noqa: E402
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='run tests marked slow')


# The longest test files first: pytest-xdist hands files out in collection order, so a long file that starts last
# keeps one worker busy while the other idles (longest-first scheduling). Measured with --durations=0, 2 workers.
LONG_FIRST = ('test_kill.py', 'test_progressive.py', 'test_site.py', 'test_browser.py', 'test_training.py',
              'test_reliability.py', 'test_figures.py', 'test_metrics.py', 'test_reproduce.py', 'test_stage2.py')


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))      # stable: the order inside a file is kept
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


def _source_key() -> str:
    "A hash of the code a tiny run depends on: cached runs are remade when it changes."
    import hashlib
    import crvae
    root = Path(crvae.__file__).parent
    h = hashlib.sha1(torch.__version__.encode())
    for f in ('core', 'data', 'bound', 'layers', 'models', 'objectives', 'training', 'classifiers'): h.update((root/f'{f}.py').read_bytes())
    return h.hexdigest()[:12]


def _cached(name:str, make) -> Path:
    "The folder `name` under $CRVAE_DATA/test-runs/<code hash>/, made once by `make(tmp)` (atomically; caches of older "
    "code are removed), shared by the test files and, behind a file lock, by parallel test workers."
    import fcntl, shutil
    from crvae.core import atomic_dir, data_home
    root = data_home()/'test-runs'
    key = _source_key()
    path = root/key/name
    if path.is_dir(): return path                        # atomic_dir: a folder under its final name is whole
    root.mkdir(parents=True, exist_ok=True)
    with open(root/'.lock', 'w') as lock:              # pytest-xdist workers: one builds, the others wait and reuse
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_dir():
            for old in root.iterdir():
                if old.is_dir() and old.name != key: shutil.rmtree(old, ignore_errors=True)
            with atomic_dir(path) as tmp: make(tmp)
    return path


def _tiny_run(name, model, sets, faces, steps=2, snapshots=False):
    "A run of `steps` steps on the 1,000-face set, cached (`_cached`; checkpoints dropped, snapshots kept only when asked)."
    import hashlib, shutil
    from crvae.training import train
    spec = hashlib.sha1(repr((model, sets, steps, len(faces), snapshots)).encode()).hexdigest()[:6]
    def make(tmp):
        train(model, tmp, steps=steps, faces=faces, n=len(faces), sets=['batch_size=8'] + sets, progress=False,
              sample_every=0, ckpt_every=0, snapshot_every=1 if snapshots else 0, keep_snapshots=3)
        shutil.rmtree(tmp/'checkpoints', ignore_errors=True)             # load() reads model.safetensors
    return _cached(f'{name}-{spec}', make)


def _tiny_classifiers(faces) -> Path:
    """A classifiers root holding tiny evaluation classifiers of `faces` (seed 0), cached: the tiny preset trained a little
    longer than the notebook's (3 epochs, at most 30 steps), so their accuracy is clearly above chance."""
    import dataclasses
    from crvae.classifiers import ClassifierTrainConfig, train_classifiers
    def make(tmp):
        torch.manual_seed(0)
        cfg = dataclasses.replace(ClassifierTrainConfig.preset('tiny'), epochs=3, max_steps=30)
        train_classifiers(faces, out=tmp, preset='tiny', train=cfg, device='cpu', progress=False)
    return _cached(f'classifiers-tiny-{len(faces)}', make)


@pytest.fixture(scope='session')
def tiny_classifiers():
    "`tiny_classifiers(faces)` -> a cached classifiers root; copy it (`shutil.copytree`) before writing into it."
    return _tiny_classifiers


@pytest.fixture(scope='session')
def tiny_run():
    "`tiny_run(name, model, sets, faces, steps=2, snapshots=False)` -> the folder of a cached tiny run."
    return _tiny_run


@pytest.fixture(scope='module')
def keep_rng():
    "Leave PyTorch's global random state as a module found it (`pytestmark = pytest.mark.usefixtures('keep_rng')`): "
    "resuming a run restores a checkpoint's RNG state."
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


@pytest.fixture(scope='module')
def one_thread():
    "One intra-op thread for a module (`pytestmark = pytest.mark.usefixtures('one_thread')`): tiny models gain nothing "
    "from a second thread, and on a shared 2-core machine two threads wait for each other."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(size)`: a real file system of `size` (a tmpfs, e.g. '8m') mounted in the test's folder, so ENOSPC comes
    from the kernel, not from a patched call; `small_disk.grow(size)` frees space by remounting it larger. Mounting needs
    root and CAP_SYS_ADMIN: elsewhere the test is skipped with the reason."""
    import subprocess
    mounted = []
    def mount(size):
        where = tmp_path/f'disk{len(mounted)}'; where.mkdir()
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(where)], capture_output=True, text=True)
        if r.returncode: pytest.skip(f'cannot mount a tmpfs here (root and CAP_SYS_ADMIN needed): {r.stderr.strip()[:100]}')
        mounted.append(where)
        return where
    mount.grow = lambda size: subprocess.run(['mount', '-o', f'remount,size={size}', str(mounted[-1])], check=True)
    yield mount
    for where in mounted: subprocess.run(['umount', str(where)])
