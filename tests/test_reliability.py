"""Reliability and safety (issue 10): nothing lost, nothing executed, every bad input answered clearly.

- the kill test (test_kill.py, a file of its own so that parallel workers share the load);
- Ctrl-C (SIGINT) in training, data building and evaluation; an interrupted notebook cell leaves the model usable;
- a full disk (ENOSPC) and an unwritable folder (EACCES), injected; non-finite values never reach a checkpoint;
- checkpoints that would run code when unpickled are refused, and nothing runs;
- the bad-input table: one parametrised case per line of the issue, each a one-line error naming the fix, exit code 2;
- property tests: random input to the attribute parser, the config loader and the checkpoint loader.
The widgets' and the Voila app's "any click order gives a message" are tested in test_tool.py
(test_messages_not_tracebacks, test_any_tool_sequence_raises_only_user_errors, test_any_click_order_in_the_ui).
"""
import errno, json, os, pickle, shutil, signal
from pathlib import Path

import numpy as np
import pytest
import torch

import crvae.avatars as A
import crvae.data as D
import crvae.runs as R
import crvae.engine as E
import crvae.training as T
import crvae.config as C
from crvae.core import UserError
from helpers.write_hook import fail_writes
from crvae.training import train
from crvae.runs import load, read_state, read_weights, save_weights
from crvae.engine import NonFiniteError
from test_kill import check_left_behind, same    # every file a killed or failed run left is whole; weights equal

HERE = Path(__file__).resolve().parent


# -- shared small runs ----------------------------------------------------------------------------------------------

QUICK = dict(progress=False, log_every=1, sample_every=0, sets=['batch_size=8'])


pytestmark = pytest.mark.usefixtures('keep_rng')


@pytest.fixture(scope='module')
def cvae_run(faces_1k, tmp_path_factory):
    "A 2-step cvae run with a checkpoint at each step (copied before any test damages it)."
    out = tmp_path_factory.mktemp('runs')/'cvae'
    torch.manual_seed(0)
    train('cvae', out, steps=2, faces=faces_1k, ckpt_every=1, **QUICK)
    return out


@pytest.fixture
def copy_run(cvae_run, tmp_path):
    "A fresh copy of the cvae run, to damage."
    def copy(name='r'):
        return Path(shutil.copytree(cvae_run, tmp_path/name))
    return copy


def one_line_error(code, err, fix):
    "A user error: exit code 2, one line `crvae CMD: error: ...` naming the fix, no traceback (progress-bar lines aside)."
    assert code == 2, (code, err)
    lines = [l for l in err.splitlines() if l.strip() and '%|' not in l]
    assert len(lines) == 1 and 'Traceback' not in err and ': error: ' in lines[0], err
    assert fix in lines[0], (fix, err)


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------------------------------------

def _signal_at_call(monkeypatch, k, sig):
    "Make the k-th generator loss (the middle of a step, after the forward pass began) send `sig` to this process."
    real, calls = T.generator_loss, []
    def loss(*a, **kw):
        out = real(*a, **kw)
        calls.append(1)
        if len(calls) == k: signal.raise_signal(sig)
        return out
    monkeypatch.setattr(T, 'generator_loss', loss)


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_ctrl_c_in_training_finishes_the_step_saves_and_resumes_exactly(tmp_path, run_cli, monkeypatch, sig):
    "Ctrl-C (or SIGTERM) in the middle of step 3: that step ends, a checkpoint is saved, the message says how to resume (exit 130); the resumed run equals an uninterrupted one."
    argv = lambda out: ['train', 'cvae', '--n', 1000, '--steps', 5, '--out', out, '--device', 'cpu', '--no-progress',
                        '--set', 'batch_size=8', '--set', 'ckpt_every=100', '--set', 'sample_every=0']
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    torch.manual_seed(0); assert run_cli(*argv(tmp_path/'ref'))[0] == 0
    with monkeypatch.context() as m:
        _signal_at_call(m, 3, sig)
        code, out, err = run_cli(*argv(tmp_path/'run'))
    assert code == 130 and len(err.strip().splitlines()) == 1, err
    assert f"interrupted: saved a checkpoint at step 3; resume with: crvae train cvae --out {tmp_path/'run'} --resume" in err
    assert read_state(tmp_path/'run'/'checkpoints'/'step-0000003'/'state.pt')['step'] == 3
    code, out, err = run_cli(*argv(tmp_path/'run'), '--resume')
    assert code == 0, err
    assert same(read_weights(tmp_path/'run'/'model.safetensors'), read_weights(tmp_path/'ref'/'model.safetensors'))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers     # the handlers are given back


def test_interrupted_notebook_cell_leaves_the_model_usable(faces_1k, tmp_path, monkeypatch):
    "A KeyboardInterrupt raised inside a step from Python (as a second Ctrl-C would): the half step is not saved, the model still samples, fit() goes on."
    mcfg, tcfg = T.make_configs('cvae', 'tiny', ['batch_size=8'], data_attrs=faces_1k.n_attrs, steps=4, device='cpu',
                                progress=False, log_every=1, sample_every=0, ckpt_every=2)
    torch.manual_seed(0)
    from crvae.models import build_model
    model = build_model('cvae', mcfg)
    trainer = T.Trainer(model, faces_1k, tcfg, tmp_path/'nb')
    real, calls = T.generator_loss, []
    def loss(*a, **kw):
        calls.append(1)
        if len(calls) == 3: raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(T, 'generator_loss', loss)
    with pytest.raises(KeyboardInterrupt, match=r'inside step 3, which is not saved.*last checkpoint is step-0000002.*fit\(\) again'):
        trainer.fit()
    assert trainer.step_ == 2 and T._latest_checkpoint(tmp_path/'nb').name == 'step-0000002'
    model.eval()
    with torch.no_grad(): x = model.sample(faces_1k.attrs[:2])
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all()
    assert trainer.fit()['step'] == 4 and T._latest_checkpoint(tmp_path/'nb').name == 'step-0000004'


def test_ctrl_c_in_data_building(tmp_path, run_cli, monkeypatch, ctrl_c_raises):
    "Ctrl-C while the avatar cache renders: exit 130, nothing half-made left, the message says to run the command again."
    real, calls = D._render_chunk, []
    def render(args):
        calls.append(1)
        if len(calls) == 2: signal.raise_signal(signal.SIGINT)
        return real(args)
    monkeypatch.setattr(D, '_render_chunk', render)
    code, out, err = run_cli('data', 'avatars', '--n', 200, '--size', 32, '--out', tmp_path/'cache', '--workers', 1)
    assert code == 130 and 'interrupted: nothing half-written was left behind' in err and 'run the same command again' in err, err
    assert list((tmp_path/'cache').iterdir()) == []


def test_ctrl_c_in_evaluation_keeps_the_scored_runs(tmp_path, run_cli, monkeypatch, cvae_run, ctrl_c_raises):
    "Ctrl-C while the second of three runs is scored: the first one's scores are written, the message names the rest (exit 130)."
    import crvae.metrics as M
    monkeypatch.setattr(M, 'load_classifiers', lambda *a, **k: object())
    calls = []
    def evaluate(model, data, clf, *a, **k):
        calls.append(1)
        if len(calls) == 2: signal.raise_signal(signal.SIGINT)
        pm = dict(mean=1.0, std=0.0)
        return dict(model=model.name, image_size=64, inception_score=pm, attribute_accuracy=None, frechet_distance=dict(value=1.0),
                    precision_recall=dict(precision=1.0, recall=1.0), reconstruction=None, n_generated=10, n_real=10,
                    reference=dict(inception_score=pm, attribute_accuracy=dict(mean=1.0)), classifier_versions={'r': 'v'}, seed=0, seconds=0.1)
    monkeypatch.setattr(M, 'evaluate_model', evaluate)
    code, out, err = run_cli('evaluate', cvae_run, cvae_run, cvae_run, '--out', tmp_path, '--quiet', '--device', 'cpu')
    assert code == 130 and 'scored 1 of 3 runs' in err and f'crvae evaluate {cvae_run} {cvae_run} --out' in err, err
    assert len(json.loads((tmp_path/'evaluation.json').read_text())) == 1


# -- a full disk, an unwritable folder ------------------------------------------------------------------------------

def _no_temporaries(root): return [p for p in Path(root).rglob('*') if p.name.endswith('.tmp')]


def test_full_disk_during_a_checkpoint(tmp_path, faces_1k, monkeypatch, run_cli):
    "ENOSPC while the step-4 checkpoint is written: a clear error, the step-2 checkpoint whole, no partial file; after freeing space --resume goes on."
    out = tmp_path/'r'
    with fail_writes(errno.ENOSPC, match='step-0000004'):       # the rename of the step-4 checkpoint folder fails
        with pytest.raises(UserError, match='no space left on the device.*free some space'):
            train('cvae', out, steps=4, faces=faces_1k, ckpt_every=2, **QUICK)
    assert _no_temporaries(out) == [] and T._latest_checkpoint(out).name == 'step-0000002'
    assert sorted(p.name for p in (out/'checkpoints').iterdir()) == ['latest', 'step-0000002']
    check_left_behind(out)
    assert train('cvae', out, steps=4, faces=faces_1k, ckpt_every=2, resume=True, **QUICK)['step'] == 4


def test_a_full_small_disk_while_training_and_shipping(small_disk, faces_1k, tmp_path, capsys):
    """A real 8 MB file system (run.json, the log and the step-1 checkpoint take 6 MB): the kernel's ENOSPC at the step-2
    checkpoint is a one-line `UserError`; the step-1 checkpoint is whole, no temporary is left; once the disk grows,
    --resume goes on to step 3. Shipping onto a full 256 kB disk: the same error, and no half-shipped folder."""
    from crvae.reliability import SMALL_RUN
    disk, small = small_disk('8m'), dict(QUICK, sets=SMALL_RUN)
    out = disk/'r'
    with pytest.raises(UserError, match='no space left on the device.*free some space') as e:
        train('cvae', out, steps=3, faces=faces_1k, ckpt_every=1, keep_checkpoints=5, **small)
    assert '\n' not in str(e.value)
    assert _no_temporaries(disk) == [] and T._latest_checkpoint(out).name == 'step-0000001'
    check_left_behind(out)
    small_disk.grow('64m')
    assert train('cvae', out, steps=3, faces=faces_1k, ckpt_every=1, resume=True, **small)['step'] == 3
    from crvae.shipping import ship
    full = small_disk('256k')
    with pytest.raises(UserError, match='no space left on the device.*free some space'): ship(out, 'small', out=full)
    assert list(full.iterdir()) == []


def test_full_disk_on_the_log_is_one_line(tmp_path, run_cli, monkeypatch):
    real = open
    def full(path, mode='r', *a, **k):
        if 'a' in mode: raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, mode, *a, **k)
    monkeypatch.setattr(E, 'open', full, raising=False)     # the engine writes log.csv
    code, out, err = run_cli('train', 'cvae', '--n', 1000, '--steps', 2, '--out', tmp_path/'r', '--no-progress', '--set', 'batch_size=8')
    one_line_error(code, err, 'free some space')
    assert 'log.csv' in err and _no_temporaries(tmp_path) == []


def test_unwritable_output_folder_fails_before_any_training(tmp_path, run_cli, monkeypatch):
    "EACCES (root writes anywhere, so it is injected): the first write, run.json, fails; not one step was trained."
    with fail_writes(errno.EACCES):
        code, out, err = run_cli('train', 'cvae', '--n', 1000, '--steps', 2, '--out', tmp_path/'r', '--no-progress', '--set', 'batch_size=8')
    one_line_error(code, err, 'choose another folder (--out) or fix its permissions')
    assert list((tmp_path/'r').iterdir()) == []


def test_full_disk_during_a_data_build(tmp_path, monkeypatch):
    real = np.save
    def full(path, *a, **k):
        if str(path).endswith('split.npy'): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(D.np, 'save', full)
    with pytest.raises(UserError, match='no space left'): D.build_avatars(n=20, size=32, root=tmp_path, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- non-finite values ----------------------------------------------------------------------------------------------

def test_nonfinite_gradient_is_reported_with_step_and_parameter(tmp_path, faces_1k, monkeypatch):
    "A loss with a finite value but a NaN gradient (d sqrt(u)/du at 0, times 0) at step 3: named, the step-2 checkpoint intact."
    real, calls = T.generator_loss, []
    def loss(model, *a, **kw):
        total, terms, fakes = real(model, *a, **kw)
        calls.append(1)
        if len(calls) == 3:
            p = next(model.parameters())
            total = total + torch.sqrt(p.sum() * 0)
        return total, terms, fakes
    monkeypatch.setattr(T, 'generator_loss', loss)
    with pytest.raises(NonFiniteError, match=r'non-finite gradient of \S+ in the gradients at step 3.*last checkpoint is intact'):
        train('cvae', tmp_path/'r', steps=4, faces=faces_1k, ckpt_every=2, **QUICK)
    w = read_weights(tmp_path/'r'/'checkpoints'/'step-0000002'/'model.safetensors')
    assert all(torch.isfinite(v.float()).all() for v in w.values()) and T._latest_checkpoint(tmp_path/'r').name == 'step-0000002'


def test_nonfinite_statistics_never_reach_a_checkpoint(tmp_path, faces_1k, monkeypatch):
    "With nonfinite=skip, a NaN batch is skipped but has already poisoned BatchNorm's running statistics: the next checkpoint is refused."
    real, poisoned = T.Trainer.get_batch, []
    def batch(self, step):
        x, a = real(self, step)
        if step == 2 and not poisoned: poisoned.append(step); x = x * float('nan')     # once: the step is then redone
        return x, a
    monkeypatch.setattr(T.Trainer, 'get_batch', batch)
    with pytest.raises(NonFiniteError, match=r'non-finite values in \S*running_\S+.* not written, the last checkpoint is intact'):
        train('cvae', tmp_path/'r', steps=6, faces=faces_1k, ckpt_every=2, nonfinite='skip', **QUICK)
    assert T._latest_checkpoint(tmp_path/'r').name == 'step-0000002'
    for f in (tmp_path/'r').rglob('*.safetensors'):
        assert all(torch.isfinite(v.float()).all() for v in read_weights(f).values()), f


# -- checkpoints that would run code ----------------------------------------------------------------------------------

class RunsCode:
    "Unpickling this object runs `touch MARKER`: pickle calls the function `__reduce__` names (here os.system)."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def test_a_checkpoint_that_would_run_code_is_refused(copy_run, tmp_path, run_cli):
    "state.pt (torch.save's zip and a bare pickle) and model.safetensors replaced by code-running pickles: refused with a one-line error, and nothing ran."
    probe = tmp_path/'PROBE'
    pickle.loads(pickle.dumps(RunsCode(probe)))
    assert probe.exists()                         # the payload is live: a plain unpickler runs it
    marker = tmp_path/'MARKER'
    for how in ('torch.save', 'pickle'):
        r = copy_run(f'state-{how}')
        st = T._latest_checkpoint(r)/'state.pt'
        if how == 'torch.save': torch.save({'step': 2, 'optimizers': RunsCode(marker)}, st)
        else: st.write_bytes(pickle.dumps(RunsCode(marker), protocol=2))
        code, out, err = run_cli('train', 'cvae', '--n', 1000, '--steps', 3, '--out', r, '--resume', '--no-progress', '--set', 'batch_size=8')
        one_line_error(code, err, 'crvae never unpickles code')
        with pytest.raises(UserError, match='could not be loaded safely'): read_state(st)
    r = copy_run('weights')
    (r/'model.safetensors').write_bytes(pickle.dumps(RunsCode(marker)))
    code, out, err = run_cli('sample', r, '--n', 2, '--out', tmp_path/'x.png')
    one_line_error(code, err, 'not a readable safetensors file')
    buf = tmp_path/'evil.pt'; torch.save(RunsCode(marker), buf)
    shutil.copy(buf, T._latest_checkpoint(r)/'model.safetensors')
    code, out, err = run_cli('train', 'cvae', '--n', 1000, '--steps', 3, '--out', r, '--resume', '--no-progress', '--set', 'batch_size=8')
    one_line_error(code, err, 'not a readable safetensors file')
    assert not marker.exists()


# -- a cache made with other settings ---------------------------------------------------------------------------------

def test_a_cache_made_with_other_settings_is_rebuilt_never_mixed(tmp_path):
    "A seed-1 avatar cache copied under the seed-2 name, and one CelebA/folder `out` reused at another size: rebuilt."
    a = D.build_avatars(n=12, size=32, seed=1, root=tmp_path/'av', workers=1, progress=False)
    shutil.copytree(a, tmp_path/'av'/D._avatar_key(12, 32, 2)[0])
    d = D.load_avatars(n=12, size=32, seed=2, root=tmp_path/'av', workers=1, progress=False)
    assert d.manifest['seed'] == 2
    assert (d.images[3].numpy() == A.render_avatar(A.sample_avatar_spec(np.random.default_rng([2, 3])), 32)).all()
    root = D.make_fake_celeba(tmp_path/'c', n=6)
    assert D.load_celeba(root, size=16, out=tmp_path/'cc', workers=1, progress=False).size == 16
    assert D.load_celeba(root, size=24, out=tmp_path/'cc', workers=1, progress=False).size == 24
    assert D.load_folder(root/'img_align_celeba', size=16, out=tmp_path/'ff', workers=1, progress=False).size == 16
    assert D.load_folder(root/'img_align_celeba', size=24, out=tmp_path/'ff', workers=1, progress=False).size == 24


# -- the bad-input table ----------------------------------------------------------------------------------------------

class Ctx:
    "What a bad-input case may build: damaged copies of the cvae run, a fake CelebA folder, a face file."
    def __init__(self, tmp, copy_run, faces):
        self.tmp, self._copy, self.faces, self.k = tmp, copy_run, faces, 0
    def run(self, damage=lambda r: None):
        self.k += 1
        r = self._copy(f'run{self.k}'); damage(r)
        return r
    def celeba(self, damage=lambda root: None, layout='official'):
        root = D.make_fake_celeba(self.tmp/f'celeba{self.k}', n=8, layout=layout); damage(root)
        return root
    def folder(self, files=()):
        from PIL import Image
        d = self.tmp/'images'; d.mkdir(exist_ok=True)
        for name in files:
            if name.startswith('bad'): (d/name).write_bytes(b'\xff\xd8 not a jpeg')
            else: Image.new('RGB', (20, 30), (200, 10, 10)).save(d/name)
        return d
    def face(self):
        from PIL import Image
        p = self.tmp/'face.png'; Image.fromarray(self.faces.images[0].permute(1, 2, 0).numpy()).save(p)
        return p
    def file(self):
        p = self.tmp/'a-file'; p.write_text('x'); return p


@pytest.fixture
def ctx(tmp_path, copy_run, faces_1k): return Ctx(tmp_path, copy_run, faces_1k)


def _truncate(p): p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
def _edit_json(p, fn):
    d = json.loads(p.read_text()); fn(d); p.write_text(json.dumps(d))
def _config(r, **kw): _edit_json(r/'run.json', lambda d: d['model_config'].update(kw))
def _other_model_weights(r):
    from crvae.models import build_model, model_config
    save_weights(build_model('vae', model_config('vae')), r/'model.safetensors')
def _latest_state(r): return T._latest_checkpoint(r)/'state.pt'
def _lines(p, k, text):
    lines = p.read_text().splitlines(); lines[k] = text; p.write_text('\n'.join(lines) + '\n')


def TRAIN(out, *a): return ['train', 'cvae', '--n', 1000, '--steps', 3, '--out', out, '--no-progress', '--set', 'batch_size=8', *a]
def SAMPLE(run, *a): return ['sample', run, '--n', 2, '--out', run.parent/'x.png', *a]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')

# (what, make(ctx) -> argv of a crvae command or a Python callable, the words of the fix the message must contain)
BAD = [
    # checkpoints
    ('checkpoint: truncated weights', lambda c: SAMPLE(c.run(lambda r: _truncate(r/'model.safetensors'))), 'restore it, or use an earlier checkpoint'),
    ('checkpoint: truncated training state', lambda c: TRAIN(c.run(lambda r: _truncate(_latest_state(r))), '--resume'), 'to resume from the checkpoint before it'),
    ('checkpoint: weights of another model', lambda c: SAMPLE(c.run(_other_model_weights)), 'load it with the run.json it was trained with'),
    ('checkpoint: resumed as another model', lambda c: ['train', 'acvae-gan'] + TRAIN(c.run(), '--resume')[2:], 'resume it with crvae train cvae'),
    ('checkpoint: another config', lambda c: SAMPLE(c.run(lambda r: _config(r, z_channels=16))), 'load it with the run.json it was trained with'),
    ('checkpoint: a config key this version does not know', lambda c: SAMPLE(c.run(lambda r: _config(r, wings=2))), 'use that version or remove the keys'),
    ('checkpoint: a config value of the wrong type', lambda c: SAMPLE(c.run(lambda r: _config(r, T='eight'))), 'restore it, or train the run again'),
    ('checkpoint: another attribute set (API)', lambda c: (lambda: load(c.run(), attr_names=['Smiling'])), 'use a run trained on this dataset'),
    ('checkpoint: another attribute set (evaluate)',
     lambda c: ['evaluate', c.run(lambda r: _edit_json(r/'run.json', lambda d: d['data']['attr_names'].reverse())), '--quiet', '--device', 'cpu'],
     'retrain the run'),
    ('checkpoint: state.pt is a code-running pickle', lambda c: TRAIN(c.run(lambda r: _latest_state(r).write_bytes(pickle.dumps(RunsCode(c.tmp/'M'), protocol=2))), '--resume'),
     'to resume from the checkpoint before it'),
    ('checkpoint: model.safetensors is a pickle', lambda c: SAMPLE(c.run(lambda r: (r/'model.safetensors').write_bytes(pickle.dumps({'w': 1})))),
     'restore it, or use an earlier checkpoint'),
    ('checkpoint: unknown format version', lambda c: SAMPLE(c.run(lambda r: _edit_json(r/'run.json', lambda d: d.update(format_version=99)))),
     'use the crvae version that wrote it'),
    ('checkpoint: run.json is not JSON', lambda c: SAMPLE(c.run(lambda r: (r/'run.json').write_text('{"model": '))), 'delete it or restore it'),
    ('checkpoint: no weights at all', lambda c: SAMPLE(c.run(lambda r: ((r/'model.safetensors').unlink(), shutil.rmtree(r/'checkpoints')))),
     'restore them, or delete'),
    # data
    ('data: CelebA file missing (named)', lambda c: ['data', 'celeba', '--root', c.celeba(lambda root: (root/'list_eval_partition.txt').unlink())],
     'lacks list_eval_partition.txt; expected the official layout'),
    ('data: CelebA image missing (named)', lambda c: ['data', 'celeba', '--root', c.celeba(lambda root: (root/'img_align_celeba'/'000005.jpg').unlink())],
     '000005.jpg; restore them or fix the folder'),
    ('data: corrupt JPEG (named)', lambda c: ['data', 'celeba', '--root', c.celeba(lambda root: (root/'img_align_celeba'/'000003.jpg').write_bytes(b'\xff\xd8 x'))],
     "000003.jpg (UnidentifiedImageError"),
    ('data: wrong attribute-file header', lambda c: ['data', 'celeba', '--root', c.celeba(lambda root: _lines(root/'list_attr_celeba.txt', 1, 'Smiling Eye-glasses!'))],
     "it should be CelebA's attribute file"),
    ('data: wrong attribute-file header (Kaggle csv)',
     lambda c: ['data', 'celeba', '--root', c.celeba(lambda root: _lines(root/'list_attr_celeba.csv', 0, 'file,Smiling,Eyeglasses,Male'), layout='kaggle')],
     "the header should start with 'image_id'"),
    ('data: images of the wrong size for the model', lambda c: ['train', 'cvae', '--n', 40, '--size', 32, '--out', c.tmp/'r', '--set', 'batch_size=8', '--no-progress'],
     'is built at 64 px'),
    ('data: an empty folder', lambda c: ['data', 'folder', '--root', c.folder()], 'point --root at a folder of images'),
    ('data: an empty CelebA folder', lambda c: ['data', 'celeba', '--root', c.folder()], 'expected the official layout'),
    ('data: a folder that does not exist', lambda c: ['data', 'folder', '--root', c.tmp/'nowhere'], 'pass --root DIR'),
    ('data: a corrupt image in a folder (named)', lambda c: ['data', 'folder', '--root', c.folder(['a.png', 'bad.jpg'])], 'bad.jpg'),
    # the command line and the API
    ('attributes: unknown name (sample)', lambda c: SAMPLE(c.run(), '--attrs', 'Smilng'), 'did you mean Smiling?); valid attributes: 5_o_Clock_Shadow'),
    ('attributes: unknown name (edit)', lambda c: ['edit', c.run(), c.face(), '--set', 'Eyeglases=1'], 'did you mean Eyeglasses'),
    ('attributes: unknown name (API)', lambda c: (lambda: c.faces.attr_index('Bald_')), 'did you mean Bald'),
    ('attributes: value 2', lambda c: SAMPLE(c.run(), '--attrs', 'Smiling=2'), 'must be 1, +1, true (present) or -1, 0, false (absent)'),
    ('attributes: value yes', lambda c: SAMPLE(c.run(), '--attrs', 'Eyeglasses=yes'), 'must be 1, +1, true (present) or -1, 0, false (absent)'),
    ('counts: sample --n 0', lambda c: SAMPLE(c.run(), '--n', 0), '--n must be at least 1'),
    ('counts: sample --nrow -3', lambda c: SAMPLE(c.run(), '--nrow', -3), '--nrow must be at least 1'),
    ('sizes: sample --scale 0', lambda c: SAMPLE(c.run(), '--scale', 0), '--scale must be at least 1'),
    ('counts: train --steps -1', lambda c: TRAIN(c.tmp/'r', '--steps', -1), '--steps must be positive'),
    ('counts: train --n 0', lambda c: TRAIN(c.tmp/'r', '--n', 0), '--n must be positive'),
    ('sizes: train --size 0', lambda c: TRAIN(c.tmp/'r', '--size', 0), '--size must be positive'),
    ('counts: train --epochs -1', lambda c: ['train', 'cvae', '--epochs', -1, '--out', c.tmp/'r'], 'must be positive'),
    ('counts: --set log_every=0', lambda c: TRAIN(c.tmp/'r', '--set', 'log_every=0'), 'must be a positive integer (--set log_every=...)'),
    ('counts: --set ckpt_every=-1', lambda c: TRAIN(c.tmp/'r', '--set', 'ckpt_every=-1'), 'must be 0 (off) or positive'),
    ('counts: --set batch_size=0', lambda c: TRAIN(c.tmp/'r', '--set', 'batch_size=0'), 'use at least 4'),
    ('sizes: --set enc_widths=[]', lambda c: TRAIN(c.tmp/'r', '--set', 'enc_widths=[]'), 'expected a non-empty list like [8, 16'),
    ('counts: data avatars --n 0', lambda c: ['data', 'avatars', '--n', 0, '--out', c.tmp], '--n must be a positive integer'),
    ('sizes: data avatars --size -64', lambda c: ['data', 'avatars', '--size', -64, '--out', c.tmp], '--size must be a positive integer'),
    ('counts: data avatars --workers 0', lambda c: ['data', 'avatars', '--n', 10, '--workers', 0, '--out', c.tmp], '--workers must be a positive integer'),
    ('counts: evaluate --n-samples 0', lambda c: ['evaluate', c.run(), '--n-samples', 0], '--n-samples must be a positive integer'),
    ('counts: evaluate --batch-size 0', lambda c: ['evaluate', c.run(), '--batch-size', 0], '--batch-size must be a positive integer'),
    ('a batch larger than the data', lambda c: TRAIN(c.tmp/'r', '--set', 'batch_size=5000'), 'use a smaller --set batch_size or more data'),
    ('a batch larger than the data (API)', lambda c: (lambda: next(D.iterate_batches(c.faces.subset('test'), 5000))), 'use a smaller --set batch_size'),
    ('--resume without a run', lambda c: TRAIN(c.tmp/'none', '--resume'), 'start one without --resume'),
    ('--resume before the first checkpoint',
     lambda c: TRAIN(c.run(lambda r: (shutil.rmtree(r/'checkpoints'), (r/'model.safetensors').unlink())), '--resume'),
     'start it again without --resume'),
    pytest.param('CUDA asked for (train)', lambda c: TRAIN(c.tmp/'r', '--device', 'cuda'), 'CUDA is not available on this machine; use --device cpu', marks=NO_CUDA),
    pytest.param('CUDA asked for (sample)', lambda c: SAMPLE(c.run(), '--device', 'cuda:0'), 'CUDA is not available on this machine; use --device cpu', marks=NO_CUDA),
    pytest.param('CUDA asked for (evaluate)', lambda c: ['evaluate', c.run(), '--device', 'cuda'], 'CUDA is not available on this machine; use --device cpu', marks=NO_CUDA),
    ('an unknown device', lambda c: TRAIN(c.tmp/'r', '--device', 'gpu'), 'use auto, cpu, cuda, cuda:N or mps'),
    ('--out under a file', lambda c: TRAIN(c.file()/'run'), 'choose another path'),
    ('an unknown model', lambda c: ['train', 'acvae-gna', '--out', c.tmp/'r'], 'did you mean acvae-gan'),
    ('an unknown --set key', lambda c: TRAIN(c.tmp/'r', '--set', 'kapa=1'), 'did you mean kappa'),
    ('an unknown non-finite policy', lambda c: TRAIN(c.tmp/'r', '--set', 'nonfinite=maybe'), 'use --set nonfinite=stop or nonfinite=skip'),
]


@pytest.mark.parametrize('what,make,fix', BAD, ids=[b.values[0] if hasattr(b, 'values') else b[0] for b in BAD])
def test_bad_input_is_one_line_naming_the_fix(what, make, fix, ctx, run_cli):
    "Each bad input: via its command, exit code 2 and one line naming the fix, no traceback; via the API, a one-line UserError."
    job = make(ctx)
    if callable(job):
        with pytest.raises(UserError) as e: job()
        assert '\n' not in str(e.value) and fix in str(e.value), str(e.value)
    else:
        code, out, err = run_cli(*job)
        one_line_error(code, err, fix)
    assert not (ctx.tmp/'M').exists()


def test_the_table_has_a_case_per_line_of_the_issue():
    assert len(BAD) >= 30


# -- property tests: random input to the attribute parser, the config loader, the checkpoint loader -------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from crvae.models import MODEL_NAMES  # noqa: E402
from crvae.sampling import parse_attrs  # noqa: E402

ATTRS = A.AVATAR_ATTRIBUTES
TOKEN = st.tuples(st.sampled_from(['', '+', '-', '--']),
                  st.sampled_from(ATTRS[:6] + ['smiling', 'EYEGLASSES', 'Smilng', 'Bald_', '', '=', 'x y']),
                  st.sampled_from(['', '=1', '=0', '=-1', '=+1', '=true', '=FALSE', '=2', '=yes', '=', '==1', '=1=1']))
ATTR_TEXT = st.one_of(st.text(max_size=40), st.lists(TOKEN.map(''.join), max_size=5).map(','.join),
                      st.lists(st.one_of(st.text(max_size=10), TOKEN.map(''.join)), max_size=4))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ATTR_TEXT)
def test_attribute_parser_random_input(text):
    "Random text (and lists of it): {known name: +-1} or a one-line UserError, nothing else."
    try: out = parse_attrs(text, ATTRS)
    except UserError as e:
        assert '\n' not in str(e); return
    assert set(out) <= set(ATTRS) and set(out.values()) <= {-1.0, 1.0}


SET_KEYS = sorted((C.MODEL_FIELDS | C.TRAIN_FIELDS) - {'model', 'preset'}) + ['bogus', 'lr ', '']
SET_VALUES = st.one_of(st.integers(-10**20, 10**20).map(str), st.floats().map(repr), st.text(max_size=6),
                       st.sampled_from(['[]', '[1,2]', '[8,16,32,64,64,64]', '[1.5]', '[true]', 'true', 'null', 'NaN', 'Infinity',
                                        '1e400', '-0', '{}', '"x"', 'stop', 'skip', 'paper', 'u', '[1,"a"]', '1' + '0' * 400]))
SETS = st.lists(st.tuples(st.sampled_from(SET_KEYS), SET_VALUES).map(lambda kv: f'{kv[0]}={kv[1]}') | st.text(max_size=12), max_size=4)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(MODEL_NAMES), SETS)
def test_config_loader_random_sets(name, sets):
    "Random `--set` items for the model and training configs: two configs or a one-line UserError, nothing else."
    try: mcfg, tcfg = T.make_configs(name, 'tiny', sets, data_attrs=32)
    except UserError as e:      # one line, unless it quotes a line break the input itself holds (the CLI prints it on one line)
        assert len(str(e).splitlines()) == 1 or any(len(f'a{s}a'.splitlines()) > 1 for s in sets), str(e); return
    assert mcfg.model == name


@pytest.fixture(scope='module')
def scratch(cvae_run, tmp_path_factory):
    "A copy of the cvae run whose files the property tests overwrite (and put back after each example)."
    return Path(shutil.copytree(cvae_run, tmp_path_factory.mktemp('scratch')/'r'))


def _with_file(path:Path, data:bytes, fn):
    "Run fn() with `path` holding `data`, then put the original back; returns fn's UserError, or None if it worked."
    orig = path.read_bytes()
    path.write_bytes(data)
    try: fn()
    except UserError as e:
        assert '\n' not in str(e); return e
    finally: path.write_bytes(orig)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=6),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8)


ENTRIES = ['model', 'model_config', 'format_version', 'data', 'train_config', 'model_config.T', 'model_config.enc_widths',
           'model_config.z_channels', 'model_config.model', 'data.attr_names']


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.tuples(st.just('bytes'), st.sampled_from(['run.json', 'model.safetensors', 'state.pt']), st.binary(max_size=200)),
                 st.tuples(st.just('bytes'), st.just('run.json'), JSON.map(lambda v: json.dumps(v).encode())),
                 st.tuples(st.just('entry'), st.sampled_from(ENTRIES), JSON)))
def test_checkpoint_loader_random_input(scratch, case):
    """Random bytes as run.json, model.safetensors or state.pt, random JSON as run.json, and a real run.json with one
    entry replaced by random JSON: `load` and `read_state` give a model or a one-line UserError, never another
    exception, never code execution."""
    kind, where, value = case
    if kind == 'entry':
        d = json.loads((scratch/'run.json').read_text())
        *parents, last = where.split('.')
        node = d
        for k in parents: node = node[k]
        node[last] = value
        where, value = 'run.json', json.dumps(d).encode()
    if where == 'state.pt':
        st_path = T._latest_checkpoint(scratch)/'state.pt'
        _with_file(st_path, value, lambda: read_state(st_path))
    else: _with_file(scratch/where, value, lambda: load(scratch, attr_names=list(A.AVATAR_ATTRIBUTES)))


@pytest.fixture(scope='module')
def resumable(cvae_run, faces_1k, tmp_path_factory):
    "A trainer for the cvae run and a copy of its last checkpoint, for state.pt fuzzing."
    r = Path(shutil.copytree(cvae_run, tmp_path_factory.mktemp('resumable')/'r'))
    info = T.read_run(r)
    mcfg = R.model_from_run(info).cfg
    tcfg = T.config_from_dict(T.TrainConfig, info['train_config'])
    trainer = T.Trainer(R.model_from_run(info), faces_1k, tcfg, r)
    ck = T._latest_checkpoint(r)
    return trainer, ck, read_state(ck/'state.pt')


STATE_PATHS = [('step',), ('gan_updates',), ('elapsed',), ('world',), ('optimizers',), ('optimizers', 'gen'), ('optimizers', 'gen', 'state'),
               ('optimizers', 'gen', 'param_groups'), ('optimizers', 'gen', 'state', 0), ('rng',), ('rng', 0), ('rng', 0, 'cpu')]
STATE_JUNK = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=5) |
                          st.integers(0, 6).map(lambda n: torch.zeros(n, dtype=torch.uint8)),
                          lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), c, max_size=3), max_leaves=6)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(STATE_PATHS), STATE_JUNK)
def test_resume_random_training_state(resumable, path, junk):
    "A real state.pt with one entry replaced by random data (tensors included): `Trainer.resume` works or raises a one-line UserError."
    import copy, io
    trainer, ck, good = resumable
    st_ = copy.deepcopy(good)
    node = st_
    for k in path[:-1]: node = node[k]
    node[path[-1]] = junk
    buf = io.BytesIO(); torch.save(st_, buf)
    _with_file(ck/'state.pt', buf.getvalue(), lambda: trainer.resume(ck))
