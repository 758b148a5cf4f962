"""The kill test (issue 10): SIGKILL at fixed and at seeded random moments of training and of a data-cache build; every
file left behind is whole or a hidden temporary, the last good checkpoint loads, `--resume` continues from it, and the
final weights equal an uninterrupted run's bit for bit."""
import csv, json, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

import crvae.avatars as A
import crvae.data as D
import crvae.training as T
from crvae.core import UserError
from crvae.reliability import verify_run
from crvae.runs import load, read_weights

HERE = Path(__file__).resolve().parent


def same(a, b): return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


pytestmark = pytest.mark.usefixtures('keep_rng')


# -- the kill test ------------------------------------------------------------------------------------------------

class KillServer:
    "tests/helpers/kill_server.py: forks `crvae` commands with a fault plan from one warm process (no import per kill)."
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, str(HERE/'helpers'/'kill_server.py')], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert json.loads(self.p.stdout.readline())['ready']
    def _ask(self, **req):
        self.p.stdin.write(json.dumps(req) + '\n'); self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())
    def start(self, argv, plan, log): return self._ask(op='run', argv=[str(a) for a in argv], plan=plan, log=str(log))['pid']
    def wait(self, pid): return self._ask(op='wait', pid=pid)
    def run(self, argv, plan, log, kill_after=None):
        pid = self.start(argv, plan, log)
        if kill_after is not None: time.sleep(kill_after); os.kill(pid, signal.SIGKILL)   # a zombie until waited: no pid reuse
        return self.wait(pid)
    def close(self):
        self.p.stdin.close(); self.p.wait(timeout=60)


@pytest.fixture(scope='module')
def server(faces_1k):     # faces_1k: the shared cache exists before any child reads it
    s = KillServer()
    yield s
    s.close()


TOTAL, EVERY = 16, 2


def train_argv(out, *extra):
    return ['train', 'crvae-gan', '--n', 1000, '--steps', TOTAL, '--out', out, '--device', 'cpu', '--no-progress',
            '--set', 'batch_size=8', '--set', f'ckpt_every={EVERY}', '--set', 'log_every=1', '--set', 'sample_every=0', *extra]


def check_left_behind(run:Path) -> dict:
    """Check every file a killed run left: `verify_run` loads each one under a final name; a partial file only ever has
    a hidden temporary name ('.NAME.XXXX.tmp'); `checkpoints/latest` names a complete checkpoint; the log has each step
    once; the run loads and samples. Returns {step: weights} of its checkpoints."""
    v = verify_run(run)
    for p in run.rglob('*'):
        rel = p.relative_to(run)
        hidden = [part for part in rel.parts if part.startswith('.')]
        if rel == Path('.lock'): continue                            # the writer's lock (runs.run_lock): a killed writer leaves it
        if hidden: assert hidden[0].endswith('.tmp'), rel           # only atomic_write/atomic_dir temporaries are hidden
        elif p.is_file(): assert p.name in ('run.json', 'log.csv', 'latest', 'model.safetensors', 'state.pt') or p.suffix == '.png', rel
    if (run/'checkpoints'/'latest').exists():
        assert v['resume_from'] == (run/'checkpoints'/'latest').read_text().strip()
    if (run/'log.csv').exists():
        steps = [int(float(r['step'])) for r in csv.DictReader(open(run/'log.csv', newline=''))]
        assert steps == list(range(1, len(steps) + 1)), steps          # whole rows, no step twice
    if v['resume_from'] or (run/'model.safetensors').exists():
        m = load(run)
        with torch.no_grad(): x = m.sample(-torch.ones(2, m.n_attrs)) if m.conditional else m.sample(n=2)
        assert torch.isfinite(x).all()
    return {s: read_weights(run/'checkpoints'/f'step-{s:07d}'/'model.safetensors') for s in v['checkpoints']}


def test_kill_training_anywhere_then_resume_is_exact(server, tmp_path):
    """At least 10 SIGKILLs of one crvae-gan run (batch 8, 16 steps, a checkpoint every 2): at fixed points (between
    steps, between the generator's and the discriminator's optimiser steps, inside the checkpoint write: a temporary
    half written, whole but not renamed, the folder renamed but `latest` not yet, `latest` but not model.safetensors)
    and at seeded random ones (random fault plans, random wall-clock moments). After each kill every file is checked;
    `--resume` continues; the final weights, and every checkpoint on the way, equal an uninterrupted run's bit for bit."""
    ref, run = tmp_path/'ref', tmp_path/'run'
    ref_pid = server.start(train_argv(ref, '--set', f'snapshot_every={EVERY}', '--set', 'keep_snapshots=100'), 'none', tmp_path/'ref.log')
    fixed = ['step:3', 'replace:8', 'halfwrite:3', 'optstep:5', 'replace:5', 'replace:6', 'halfwrite:1', 'step:4']
    rng = random.Random(10)
    seeded = [f"{k}:{rng.randint(1, n)}" for k, n in [rng.choice([('step', 5), ('optstep', 12), ('replace', 7), ('halfwrite', 6)]) for _ in range(2)]]
    plans = fixed + seeded + [f'time:{rng.uniform(0.3, 1.2):.2f}' for _ in range(1)] + ['none']
    kills, seen = 0, {}
    for i, plan in enumerate(plans):
        resume = (run/'run.json').exists()
        argv = train_argv(run, *(['--resume'] if resume else []))
        log = tmp_path/f'{i}.log'
        if plan.startswith('time:'): res = server.run(argv, 'none', log, kill_after=float(plan[5:]))
        else: res = server.run(argv, plan, log)
        text = log.read_text()
        if plan.startswith('time:') and res['code'] == 0: break                    # it finished before the moment came
        if plan == 'none':
            assert res['code'] == 0, text
            break
        assert res['signal'] == signal.SIGKILL, (plan, res, text)
        kills += 1
        seen.update(check_left_behind(run))
        if T._latest_checkpoint(run) is None:
            # killed before its first checkpoint: --resume says so and names the fix, which we follow
            res = server.run(train_argv(run, '--resume'), 'none', tmp_path/f'{i}-resume.log')
            msg = (tmp_path/f'{i}-resume.log').read_text()
            assert res['code'] == 2 and 'no complete checkpoint yet' in msg and len(msg.strip().splitlines()) == 1, msg
            shutil.rmtree(run)
    else: raise AssertionError('the run never finished')
    if not (run/'run.json').exists() or T.read_run(run).get('last_step') != TOTAL:
        res = server.run(train_argv(run, '--resume'), 'none', tmp_path/'last.log')
        assert res['code'] == 0, (tmp_path/'last.log').read_text()
    assert kills >= 10, kills
    assert server.wait(ref_pid)['code'] == 0, (tmp_path/'ref.log').read_text()
    seen.update(check_left_behind(run))
    assert T.read_run(run)['last_step'] == TOTAL
    assert same(read_weights(run/'model.safetensors'), read_weights(ref/'model.safetensors'))
    for step, w in seen.items():                 # every checkpoint written on the way is the uninterrupted run's
        assert same(w, read_weights(ref/'snapshots'/f'step-{step:07d}.safetensors')), step
    assert len(seen) >= 4
    print(f'{kills} kills of training; checkpoints compared at steps {sorted(seen)}')


def test_kill_data_cache_build(server, tmp_path):
    "SIGKILL in the middle of rendering and just before the cache folder's rename: no cache under its final name; the next build is whole."
    root = tmp_path/'cache'
    argv = ['data', 'avatars', '--n', 200, '--size', 32, '--seed', 5, '--out', root, '--workers', 1]
    for plan in ('render:2', 'replace:2'):
        res = server.run(argv, plan, tmp_path/'d.log')
        assert res['signal'] == signal.SIGKILL, (tmp_path/'d.log').read_text()
        assert all(p.name.startswith('.') and p.name.endswith('.tmp') for p in root.iterdir()), list(root.iterdir())
        with pytest.raises(UserError): D._validate_cache(root/D._avatar_key(200, 32, 5)[0])
    res = server.run(argv, 'none', tmp_path/'d.log')
    assert res['code'] == 0 and 'built' in (tmp_path/'d.log').read_text()
    d = D.load_avatars(n=200, size=32, seed=5, root=root, progress=False)
    for i in (0, 127, 128, 199):                   # both chunks, rendered again from scratch
        assert (d.images[i].numpy() == A.render_avatar(A.sample_avatar_spec(np.random.default_rng([5, i])), 32)).all()
