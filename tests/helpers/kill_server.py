"""A small fork server for tests/test_reliability.py's kill test.

It imports torch and crvae once (one thread, no tensor work before forking, so forking is safe), then reads one JSON
request per line on stdin:

- {"op": "run", "argv": [...], "plan": "KIND:K", "log": PATH}: fork a child that arms a fault plan and runs
  `crvae ARGV` with its stdout and stderr in PATH; answers {"pid": PID} at once.
- {"op": "wait", "pid": PID}: wait for that child; answers {"code": exit code or null, "signal": signal number or null}.

Fault plans (each counts its events inside one child and SIGKILLs the child at the K-th, so the moment is exact):
  none           run to the end
  step:K         at the start of the K-th training step (between iterations)
  optstep:K      right after the K-th optimiser step (crvae-gan: between the generator's and the discriminator's)
  replace:K      before the K-th rename of an atomic writer's temporary (write_hook.py): it is whole but not yet renamed
  halfwrite:K    inside the K-th atomic write: half of its bytes are on disk (fsynced), the rest never come
  render:K       at the start of the K-th avatar render chunk (during a data-cache build)
Answering on stdout and reading stdin only, it never outlives its parent (EOF ends it).
"""
import json, os, signal, sys, traceback

os.environ['OMP_NUM_THREADS'] = '1'
import torch  # noqa: E402
torch.set_num_threads(1)
import crvae.core as core  # noqa: E402
import crvae.data as D  # noqa: E402
import crvae.training as T  # noqa: E402
from crvae.models import build_model, model_config  # noqa: E402
from write_hook import calling  # noqa: E402  (this folder: the script's own)

# Warm what every child would otherwise pay for again (imports, no tensor work): the first model built on the 'meta'
# device (`check_buildable`) sets PyTorch's meta kernels up, the first optimiser imports torch._dynamo (about 3 s).
with torch.device('meta'):
    m = build_model('crvae-gan', model_config('crvae-gan', 'tiny'))
    torch.optim.Adam(m.parameters())


def die(): os.kill(os.getpid(), signal.SIGKILL)


def arm(plan:str):
    "Install the fault plan `plan` in this (child) process."
    kind, _, k = plan.partition(':')
    if kind == 'none': return
    k, count = int(k), [0]
    def tick():
        count[0] += 1
        return count[0] == k
    if kind == 'step':
        real = T.Trainer.step
        def step(self):
            if tick(): die()
            return real(self)
        T.Trainer.step = step
    elif kind == 'optstep':
        real = T.Trainer._opt_step
        def opt_step(self, name):
            real(self, name)
            if tick(): die()
        T.Trainer._opt_step = opt_step
    elif kind == 'replace':
        def before_replace(tmp):
            if tick(): die()
        os.replace = calling(before_replace)
    elif kind == 'halfwrite':
        real = os.fdopen
        class Half:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): return self.f.__exit__(*a)
            def __getattr__(self, name): return getattr(self.f, name)
            def write(self, data):
                self.f.write(data[:len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno()); die()
        def fdopen(*a, **kw):
            f = real(*a, **kw)
            return Half(f) if tick() else f
        core.os.fdopen = fdopen
    elif kind == 'render':
        real = D._render_chunk
        def render(args):
            if tick(): die()
            return real(args)
        D._render_chunk = render
    else: raise ValueError(f'unknown fault plan {plan!r}')


def child(req):
    fd = os.open(req['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)
    code = 99
    try:
        arm(req['plan'])
        code = core.main([str(a) for a in req['argv']])
    except SystemExit as e: code = e.code if isinstance(e.code, int) else 1
    except BaseException: traceback.print_exc()
    finally:
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)


def serve():
    for line in sys.stdin:
        req = json.loads(line)
        if req['op'] == 'run':
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0: child(req)
            ans = dict(pid=pid)
        else:
            _, status = os.waitpid(req['pid'], 0)
            ans = dict(code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                       signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
        print(json.dumps(ans), flush=True)


if __name__ == '__main__':
    print(json.dumps(dict(ready=True)), flush=True)
    serve()
