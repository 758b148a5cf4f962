"""The tests' write hook: call a function with each atomic writer's whole temporary file or folder just before crvae
renames it into place, to fail that write (a full disk, an unwritable folder) or kill the process at that moment.

The package carries no hook for this. `crvae.core.atomic_write` and `atomic_dir` finish with `os.replace(tmp, path)`, and
their temporaries are named `.NAME.pidPID-MACHINE-xxxxxxxx.tmp` (`crvae.core._TMP_NAME`); so a test wraps `os.replace`
and acts on those renames only. Used by tests/test_reliability.py, test_data.py, test_tool.py, the kill server
(helpers/kill_server.py, in its forked children) and nbs/09_reliability.ipynb."""
import contextlib, errno, os, re
from pathlib import Path

from crvae.core import _TMP_NAME


def calling(hook, replace=None):
    "`os.replace` (or `replace`), calling `hook(tmp)` first when the source is an atomic writer's temporary."
    replace = replace or os.replace
    def replace_after_hook(src, dst, *a, **kw):
        if re.fullmatch(_TMP_NAME, os.path.basename(os.fspath(src))): hook(Path(src))
        return replace(src, dst, *a, **kw)
    return replace_after_hook


@contextlib.contextmanager
def before_replace(hook):
    "Within this block, `hook(tmp)` is called with each atomic writer's temporary just before its rename."
    real = os.replace
    os.replace = calling(hook, real)
    try: yield
    finally: os.replace = real


@contextlib.contextmanager
def fail_writes(err:int=errno.ENOSPC, match:str=''):
    """Within this block, every atomic write whose file name contains `match` fails with `OSError(err)` (ENOSPC: a full
    disk, EACCES: an unwritable folder)."""
    def fail(tmp):
        if match in tmp.name: raise OSError(err, os.strerror(err), str(tmp))
    with before_replace(fail): yield
