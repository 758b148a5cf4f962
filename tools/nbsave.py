"""`nbdev-test --save` with matplotlib's figures at 1x (`make nbs` runs it): the committed notebooks stay small.

    python tools/nbsave.py [nbdev-test arguments ...]

nbdev-test runs each notebook in execnb's `CaptureShell`, which asks matplotlib for 'retina' figures (twice the pixels
in each direction). Saved into the notebooks, that makes every figure about three times the bytes of a Jupyter run, and
the course past `tests/test_notebook_outputs.py`'s size limit. This wrapper makes 'png' the shell's default and then runs
nbdev-test with the arguments given (parallel workers are forked, so they inherit the default).
"""
import functools, sys
import execnb.shell

_init = execnb.shell.CaptureShell.__init__

@functools.wraps(_init)
def _png_init(self, *args, mpl_format='png', **kwargs): _init(self, *args, mpl_format=mpl_format, **kwargs)

execnb.shell.CaptureShell.__init__ = _png_init

if __name__ == '__main__':
    from nbdev.test import nbdev_test
    sys.argv[0] = 'nbdev-test'
    nbdev_test()
