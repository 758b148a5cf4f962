"""The bad-input table: every way a user can give crvae a wrong input, with the fix its one-line message must name.

Each case of `BAD_INPUTS` is (command, what is wrong, how to make it in a `Scene`, words of the fix). `run_case` runs one
in-process and reports what it printed and changed; `case_problems` says what of the promise it broke (exit code 2, one
line naming the fix, no traceback, nothing written). Test machinery, kept out of the package: tests/test_bad_inputs.py
runs every row, and nbs/09_reliability.ipynb loads the table from here and shows it."""
from __future__ import annotations
import os
from pathlib import Path

import torch

from crvae.reliability import SMALL_RUN


class Scene:
    """What the bad-input cases work on, inside folder `root`: a small cvae run saved at step 0 with its checkpoint (made in
    about a second from the 1,000 cached avatar faces, no training), fresh copies of it that a case may damage (`run`),
    a face image, a classifier folder (`classifiers`), a plain file. `clean()` removes what a case made."""
    def __init__(self, root, faces=None):
        from crvae.data import load_avatars
        self.root = Path(root); self.root.mkdir(parents=True, exist_ok=True)
        self.faces = faces if faces is not None else load_avatars(n=1000, progress=False)
        self.base, self.k, self.made = self.root/'base', 0, []
        if not (self.base/'run.json').exists(): self._make_run(self.base)

    def _make_run(self, out):
        from crvae.core import save_json
        from crvae.config import make_configs
        from crvae.models import build_model
        from crvae.training import Trainer
        mcfg, tcfg = make_configs('cvae', 'tiny', SMALL_RUN, data_attrs=self.faces.n_attrs, n=len(self.faces), steps=2, device='cpu',
                                  progress=False, sample_every=0, eval_every=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            trainer = Trainer(build_model('cvae', mcfg), self.faces, tcfg, out)
        out.mkdir(parents=True)
        save_json(out/'run.json', trainer.run_json())
        trainer.save_checkpoint()

    def path(self, name:str) -> Path:
        "A new path in the scene (nothing there yet), removed by `clean()`."
        self.k += 1
        p = self.root/f'{self.k:03d}-{name}'
        self.made.append(p)
        return p

    def run(self, damage=None) -> Path:
        "A copy of the run, damaged by `damage(run_folder)` if given."
        import shutil
        r = self.path('run'); shutil.copytree(self.base, r)
        if damage is not None: damage(r)
        return r

    def face(self) -> Path:
        "A 64 px face image (PNG)."
        from PIL import Image
        p = self.path('face.png'); Image.fromarray(self.faces.images[0].permute(1, 2, 0).numpy()).save(p)
        return p

    def classifiers(self, damage=None) -> Path:
        "A folder with both (untrained, tiny) evaluation classifiers of the faces and their cards, damaged by `damage(folder)` if given."
        from crvae.classifiers import (AttributeClassifier, AttributeClassifierConfig, RecognitionClassifier, RecognitionClassifierConfig,
                                       recognition_targets, save_classifier, dataset_identity)
        d = self.path('classifiers')
        card = dict(dataset=dict(identity=dataset_identity(self.faces)))
        with torch.random.fork_rng(devices=[]):
            save_classifier(AttributeClassifier(self.faces.n_attrs, AttributeClassifierConfig.preset('tiny')), dict(card), d)
            heads = recognition_targets(self.faces)[0]
            save_classifier(RecognitionClassifier(heads, RecognitionClassifierConfig.preset('tiny')), dict(card), d)
        if damage is not None: damage(d)
        return d

    def file(self) -> Path:
        p = self.path('a-file'); p.write_text('x'); return p

    def clean(self):
        import shutil
        while _HELD_LOCKS: os.close(_HELD_LOCKS.pop())    # the live writers some cases play
        for p in self.made:
            if p.is_dir() and not p.is_symlink(): shutil.rmtree(p)
            else: p.unlink(missing_ok=True)
        self.made = []

def _edit_json(path, fn):
    "Change a JSON file in place: `fn(data)` edits it (or returns a replacement)."
    import json
    d = json.loads(Path(path).read_text()); new = fn(d)
    Path(path).write_text(json.dumps(d if new is None else new))

def _model_config(**kw): return lambda r: _edit_json(r/'run.json', lambda d: d['model_config'].update(kw))
def _run_data(**kw): return lambda r: _edit_json(r/'run.json', lambda d: d['data'].update(kw))
def _run_entry(**kw): return lambda r: _edit_json(r/'run.json', lambda d: d.update(kw))
def _train_config(**kw): return lambda r: _edit_json(r/'run.json', lambda d: d['train_config'].update(kw))
def _killed_before_first_checkpoint(r):
    import shutil
    shutil.rmtree(r/'checkpoints'); (r/'model.safetensors').unlink()

def _nested(r): (r/'run.json').write_text('[' * 100_000 + ']' * 100_000)
def _state(r): return r/'checkpoints'/'step-0000000'/'state.pt'

def _negative_step(r):
    st = torch.load(_state(r), weights_only=True); st['step'] = -5
    torch.save(st, _state(r))

def _nan_weights(r):
    from safetensors.torch import load, save
    w = load((r/'model.safetensors').read_bytes())
    k = next(k for k, v in w.items() if v.is_floating_point()); w[k] = w[k] * float('nan')
    (r/'model.safetensors').write_bytes(save(w))

def _card_without_weights(d): _edit_json(d/'recognition.json', lambda c: c.pop('weights'))

def _swapped_weights(d):
    "attributes.safetensors replaced by the recognition network's weights, and its card's checksum updated to match."
    import hashlib, shutil
    shutil.copy(d/'recognition.safetensors', d/'attributes.safetensors')
    sha = hashlib.sha256((d/'attributes.safetensors').read_bytes()).hexdigest()
    _edit_json(d/'attributes.json', lambda c: c['weights'].update(sha256=sha))

def _huge_png(s) -> Path:
    "A PNG whose header claims 15000 x 15000 pixels (Pillow refuses it before reading a pixel)."
    import struct, zlib
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    p = s.path('huge.png')
    p.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 15000, 15000, 8, 2, 0, 0, 0)) +
                  chunk(b'IDAT', zlib.compress(b'\0' * 64)) + chunk(b'IEND', b''))
    return p

def _weights_map(fn):
    "A damage: each tensor of the run's model.safetensors replaced by `fn(name, tensor)`."
    def damage(r):
        from safetensors.torch import load, save
        w = load((r/'model.safetensors').read_bytes())
        (r/'model.safetensors').write_bytes(save({k: fn(k, v) for k, v in w.items()}))
    return damage

_negative_var = _weights_map(lambda k, v: -torch.ones_like(v) if k.endswith('running_var') else v)   # finite, yet NaN faces
_huge_weights = _weights_map(lambda k, v: v * 1e30 if v.is_floating_point() else v)
_int8_weights = _weights_map(lambda k, v: v.to(torch.int8) if v.is_floating_point() else v)
_bool_weights = _weights_map(lambda k, v: v > 0 if v.is_floating_point() else v)

def _fifo(s, name='pipe') -> Path:
    "A FIFO (named pipe) in the scene: opening it to read would wait for a writer forever."
    p = s.path(name); os.mkfifo(p); return p

def _device(s) -> Path:
    "A private character device node in the scene (the numbers of /dev/null; made with mknod as root, else a FIFO)."
    import stat
    p = s.path('device')
    try: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError): os.mkfifo(p)
    return p

def _as_fifo(name):
    "A damage: file `name` of the run replaced by a FIFO."
    def damage(r): (r/name).unlink(missing_ok=True); os.mkfifo(r/name)
    return damage

def _sparse(s) -> Path:
    "A 1 GiB sparse file beside the scene (no disk used; the scene's listing does not read it): read whole, it would fill memory."
    p = s.root.parent/'sparse-1gib'
    if not p.exists():
        with open(p, 'wb') as f: f.truncate(2**30)
    return p

def _link_to_sparse(name, s):
    "A damage: file `name` of the run replaced by a link to the sparse 1 GiB file."
    def damage(r): (r/name).unlink(missing_ok=True); (r/name).symlink_to(_sparse(s))
    return damage

_HELD_LOCKS: list = []    # locks a case holds as a live writer would (closed by `Scene.clean`)

def _locked(r):
    "A damage: run folder `r` locked by a live writer (pid 4242 written in its lock file)."
    import fcntl
    from crvae.runs import LOCK_NAME
    Path(r).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(r)/LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644); os.write(fd, b'4242\n'); fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD_LOCKS.append(fd)
    return r

def _users_folder(s) -> Path:
    "A folder of the user's own files whose names crvae also uses (a checkpoint folder, weights, a log)."
    d = s.path('mine'); (d/'checkpoints'/'step-0000001').mkdir(parents=True)
    (d/'checkpoints'/'step-0000001'/'notes.txt').write_text('my notes')
    (d/'model.safetensors').write_bytes(b'my own weights'); (d/'log.csv').write_text('a,b\n1,2\n')
    return d

def _other_tools_run(s) -> Path:
    "A folder holding another tool's run.json, log.csv and curves.csv."
    d = s.path('other'); d.mkdir()
    (d/'run.json').write_text('{"tool": "other", "steps": 3}'); (d/'log.csv').write_text('step,loss\n1,2\n')
    (d/'curves.csv').write_text('step,fid\n1,30\n')
    return d

def _train(s, *a): return ['train', 'cvae', '--n', 1000, '--steps', 2, '--out', s.path('new'), '--no-progress', '--set', 'batch_size=8', *a]
def _resume(s, damage=None, *a): return ['train', 'cvae', '--out', s.run(damage), '--resume', '--steps', 2, '--no-progress', *a]
def _sample(s, run=None, *a): return ['sample', run or s.run(), '--out', s.path('x.png'), *a]
def _evaluate(s, clf, *a): return ['evaluate', s.run(), '--classifiers', clf, '--out', s.path('eval'), '--quiet', '--device', 'cpu', *a]

# (command, what is wrong, argv of the case made in a `Scene`, words the one-line message must contain)
BAD_INPUTS = [
    # train: the numeric options, refused before any work with their range
    ('train', '--minutes 0', lambda s: ['train', 'cvae', '--minutes', 0, '--out', s.path('new')],
     '--minutes must be positive: a number from 0.01'),
    ('train', '--minutes -5', lambda s: ['train', 'cvae', '--minutes', -5, '--out', s.path('new')], '--minutes must be positive'),
    ('train', '--minutes nan', lambda s: ['train', 'cvae', '--minutes', 'nan', '--out', s.path('new')],
     "argument --minutes: expected a finite number"),
    ('train', '--epochs inf', lambda s: ['train', 'cvae', '--epochs', 'inf', '--out', s.path('new')],
     "argument --epochs: expected a finite number"),
    ('train', '--minutes 1e9', lambda s: ['train', 'cvae', '--minutes', 1e9, '--out', s.path('new')],
     'a number from 0.01 to 10,000,000 minutes'),
    ('train', '--steps 0', lambda s: ['train', 'cvae', '--steps', 0, '--out', s.path('new')],
     '--steps must be positive: an integer from 1'),
    ('train', '--steps 10**12', lambda s: ['train', 'cvae', '--steps', 10**12, '--out', s.path('new')],
     'an integer from 1 to 10,000,000,000'),
    ('train', '--steps ten', lambda s: ['train', 'cvae', '--steps', 'ten', '--out', s.path('new')],
     "argument --steps: expected an integer, got 'ten'"),
    ('train', '--epochs 0', lambda s: ['train', 'cvae', '--epochs', 0, '--out', s.path('new')], '--epochs must be positive'),
    ('train', '--n 0', lambda s: ['train', 'cvae', '--n', 0, '--out', s.path('new')], '--n must be positive'),
    ('train', '--n 10**12', lambda s: ['train', 'cvae', '--n', 10**12, '--out', s.path('new')],
     '--n must be an integer from 1 to 10,000,000 faces'),
    ('train', '--size 0', lambda s: ['train', 'cvae', '--size', 0, '--out', s.path('new')], '--size must be positive'),
    ('train', '--size 100000', lambda s: ['train', 'cvae', '--size', 100000, '--out', s.path('new')],
     '--size must be an integer from 16 to 1,024 px'),
    ('train', '--seed 99999999999999999999999', lambda s: ['train', 'cvae', '--seed', '9' * 23, '--out', s.path('new')], 'is out of range'),
    ('train', '--seed -1', lambda s: ['train', 'cvae', '--seed', -1, '--out', s.path('new')],
     '--seed must be an integer from 0 to 4,294,967,295'),
    ('train', '--out ""', lambda s: ['train', 'cvae', '--out', ''], '--out is empty: give a path'),
    ('train', 'an unknown model', lambda s: ['train', 'acvae-gna', '--out', s.path('new')], 'did you mean acvae-gan'),
    # train: --set values
    ('train', '--set z_dim=1000000000000', lambda s: _train(s, '--set', 'z_dim=1000000000000'),
     'at most 1,000,000,000); change the --set values'),
    ('train', '--set enc_widths=[-8,16,32,64,64,64]', lambda s: _train(s, '--set', 'enc_widths=[-8,16,32,64,64,64]'),
     'every width must be a positive integer'),
    ('train', '--set lr=NaN', lambda s: _train(s, '--set', 'lr=NaN'), '--set lr=NaN: expected a finite number'),
    ('train', '--set z_channels=ten', lambda s: _train(s, '--set', 'z_channels=ten'), 'expected an integer'),
    ('train', '--set ckpt_minutes=-1', lambda s: _train(s, '--set', 'ckpt_minutes=-1'), 'ckpt_minutes=-1.0: must be 0 (off) or positive'),
    ('train', '--set keep_checkpoints=10**7', lambda s: _train(s, '--set', 'keep_checkpoints=10000000'), 'is too large: at most 1,000,000'),
    ('train', '--set seed=1e30', lambda s: _train(s, '--set', 'seed=1e30'), 'seed must be an integer from 0 to 4,294,967,295'),
    ('train', '--set batch_size=10**9', lambda s: _train(s, '--set', 'batch_size=1000000000'), 'use a smaller --set batch_size'),
    ('train', '--set kapa=0', lambda s: _train(s, '--set', 'kapa=0'), 'did you mean kappa'),
    ('train', '--set lr', lambda s: _train(s, '--set', 'lr'), 'expected key=value'),
    # train: the run folder
    ('train', 'a run folder that holds a run, without --resume',
     lambda s: ['train', 'cvae', '--n', 1000, '--out', s.run(), '--no-progress'],
     'pass --resume to continue it'),
    ('train', '--resume where no run is', lambda s: _train(s, '--resume'), 'start one without --resume'),
    ('train', '--resume --n 2000', lambda s: _resume(s, None, '--n', 2000), "these options differ: --n 2000 (the run's: 1000)"),
    ('train', '--resume --seed 7', lambda s: _resume(s, None, '--seed', 7), "--seed 7 (the run's: 0): drop them"),
    ('train', '--resume --config paper', lambda s: _resume(s, None, '--config', 'paper'), "--config paper (the run's: tiny)"),
    ('train', '--resume --data folder', lambda s: _resume(s, None, '--data', 'folder'), "--data folder (the run's: avatars)"),
    ('train', '--resume --root DIR', lambda s: _resume(s, None, '--root', s.path('faces')),
     "(the run's: None): drop them, or start a new run"),
    ('train', '--resume --set z_channels=16', lambda s: _resume(s, None, '--set', 'z_channels=16'), 'these --set items would change it'),
    ('train', '--resume: log.csv is binary', lambda s: _resume(s, lambda r: (r/'log.csv').write_bytes(b'\x89PNG\x00\xff\xfe' * 50)),
     'log.csv is damaged (UnicodeDecodeError'),
    ('train', '--resume: log.csv has no step column', lambda s: _resume(s, lambda r: (r/'log.csv').write_text('epoch,loss\n1,2\n')),
     "log.csv has no 'step' column"),
    ('train', '--resume: run.json z_dim is a string', lambda s: _resume(s, _model_config(z_dim='512')),
     'restore it, or train the run again'),
    ('train', '--resume: run.json nested 100,000 deep', lambda s: _resume(s, _nested), 'is nested too deeply'),
    ('train', '--resume: run.json data is a list', lambda s: _resume(s, _run_entry(data=[1, 2])), "'data' must be an object, not list"),
    ('train', '--resume: run.json data.root is a number', lambda s: _resume(s, _run_data(root=5)), 'data.root must be a text'),
    ('train', '--resume: run.json train_config.n = 1e15', lambda s: _resume(s, _train_config(n=1e15)),
     'n=1000000000000000.0 is too large: at most 10,000,000'),
    ('train', '--resume: state.pt with a negative step', lambda s: _resume(s, _negative_step), 'holds step -5'),
    ('train', '--resume before the first checkpoint', lambda s: _resume(s, _killed_before_first_checkpoint),
     'start it again without --resume (it restarts from step 0)'),
    ('train', '--resume: final weights but no checkpoint', lambda s: _resume(s, lambda r: __import__('shutil').rmtree(r/'checkpoints')),
     'so it cannot go on; start a new run in another --out'),
    ('train', '--init-from a folder that is no run', lambda s: _train(s, '--init-from', s.root), 'is not a crvae run'),
    # sample: sizes bounded, work in batches; damaged runs
    ('sample', '--n 100000', lambda s: _sample(s, None, '--n', 100000), '--n must be an integer from 1 to 4,096 faces'),
    ('sample', '--n 0', lambda s: _sample(s, None, '--n', 0), '--n must be at least 1'),
    ('sample', '--scale 3000', lambda s: _sample(s, None, '--scale', 3000), '--scale must be an integer from 1 to 16 times'),
    ('sample', '--scale 0', lambda s: _sample(s, None, '--scale', 0), '--scale must be at least 1'),
    ('sample', '--n 4096 --scale 16', lambda s: _sample(s, None, '--n', 4096, '--scale', 16), 'megapixels, at most 100): use fewer faces'),
    ('sample', '--nrow 0', lambda s: _sample(s, None, '--nrow', 0), '--nrow must be at least 1'),
    ('sample', '--nrow 1000000000 (more than --n)', lambda s: _sample(s, None, '--nrow', 10**9), '--nrow must be from 1 to --n (16)'),
    ('sample', '--seed 99999999999999999999999', lambda s: _sample(s, None, '--seed', '9' * 23), 'is out of range'),
    ('sample', '--seed -5', lambda s: _sample(s, None, '--seed', -5), '--seed must be an integer from 0'),
    ('sample', '--out ""', lambda s: ['sample', s.run(), '--out', ''], '--out is empty'),
    ('sample', 'weights that hold NaN', lambda s: _sample(s, s.run(_nan_weights)), 'hold NaN or infinite values'),
    ('sample', '--attrs Smilng', lambda s: _sample(s, None, '--attrs', 'Smilng'), 'did you mean Smiling?)'),
    ('sample', '--attrs Smiling=2', lambda s: _sample(s, None, '--attrs', 'Smiling=2'),
     'must be 1, +1, true (present) or -1, 0, false (absent)'),
    ('sample', '--attrs Smiling,-Smiling', lambda s: _sample(s, None, '--attrs', 'Smiling,-Smiling'),
     'is given twice with different values'),
    ('sample', '--unnamed sometimes', lambda s: _sample(s, None, '--unnamed', 'sometimes'), 'use one of prevalence, match, absent'),
    ('sample', 'run.json nested 100,000 deep', lambda s: _sample(s, s.run(_nested)), 'is nested too deeply'),
    ('sample', 'run.json data is a string', lambda s: _sample(s, s.run(_run_entry(data='avatars'))), "'data' must be an object, not str"),
    ('sample', 'run.json attr_names is a number', lambda s: _sample(s, s.run(_run_data(attr_names=7))),
     'data.attr_names must be a list of names'),
    ('sample', 'run.json data.n = 1e15', lambda s: _sample(s, s.run(_run_data(n=1e15))),
     'data.n must be a number of faces from 1 to 10,000,000'),
    ('sample', 'run.json z_dim is a string', lambda s: _sample(s, s.run(_model_config(z_dim='512'))), 'restore it, or train the run again'),
    ('sample', 'run.json z_dim = 10**12', lambda s: _sample(s, s.run(_model_config(z_dim=10**12))), 'parameters'),
    ('sample', 'a folder that is no run', lambda s: _sample(s, s.path('nothing')), 'is not a crvae run'),
    # edit, reconstruct
    ('edit', '--scale 3000', lambda s: ['edit', s.run(), s.face(), '--set', 'Eyeglasses=1', '--scale', 3000, '--out', s.path('e.png')],
     '--scale must be an integer from 1 to 16'),
    ('edit', 'an image that does not exist',
     lambda s: ['edit', s.run(), s.path('no.png'), '--set', 'Eyeglasses=1', '--out', s.path('e.png')],
     'no such image file'),
    ('edit', 'no --set', lambda s: ['edit', s.run(), s.face(), '--out', s.path('e.png')], 'say what to change with --set NAME=VALUE'),
    ('edit', '--out ""', lambda s: ['edit', s.run(), s.face(), '--set', 'Eyeglasses=1', '--out', ''], '--out is empty'),
    ('edit', 'a 15000x15000 PNG', lambda s: ['edit', s.run(), _huge_png(s), '--set', 'Eyeglasses=1', '--out', s.path('e.png')],
     'is too large to read safely'),
    ('reconstruct', 'a 15000x15000 PNG', lambda s: ['reconstruct', s.run(), _huge_png(s), '--out', s.path('r.png')],
     'is too large to read safely'),
    ('reconstruct', 'a folder as the image', lambda s: ['reconstruct', s.run(), s.root, '--attrs', 'Smiling', '--out', s.path('r.png')],
     'is a folder, not an image file'),
    # evaluate: the classifier cards
    ('evaluate', '--seed 99999999999999999999999', lambda s: ['evaluate', s.run(), '--seed', '9' * 23], 'is out of range'),
    ('evaluate', '--n-samples 0', lambda s: ['evaluate', s.run(), '--n-samples', 0], '--n-samples must be a positive integer'),
    ('evaluate', 'a classifier card {}', lambda s: _evaluate(s, s.classifiers(lambda d: (d/'attributes.json').write_text('{}'))),
     'attributes.json lacks its format, its weights entry'),
    ('evaluate', 'a classifier card without weights', lambda s: _evaluate(s, s.classifiers(_card_without_weights)),
     'recognition.json lacks its format, its weights entry'),
    ('evaluate', "another network's weights, checksum matching", lambda s: _evaluate(s, s.classifiers(_swapped_weights)),
     'holds the weights of another network than'),
    # classifiers, data, info, the command line
    ('classifiers', '--epochs 0', lambda s: ['classifiers', '--epochs', 0, '--out', s.path('c')], '--epochs must be a positive integer'),
    ('classifiers', '--size 0', lambda s: ['classifiers', '--size', 0, '--out', s.path('c')], '--size must be positive'),
    ('classifiers', '--n 0', lambda s: ['classifiers', '--n', 0, '--out', s.path('c')], '--n must be positive'),
    ('data', 'avatars --seed -3', lambda s: ['data', 'avatars', '--n', 4, '--seed', -3, '--out', s.path('d')],
     '--seed must be an integer of 0 or more'),
    ('data', 'avatars --n 0', lambda s: ['data', 'avatars', '--n', 0, '--out', s.path('d')], '--n must be a positive integer'),
    ('data', 'folder --root that does not exist', lambda s: ['data', 'folder', '--root', s.path('nowhere')], 'pass --root DIR'),
    ('data', 'folder --root ""', lambda s: ['data', 'folder', '--root', ''], '--root is empty: give a path'),
    ('info', 'an unknown model', lambda s: ['info', 'crvae-gna'], 'did you mean crvae-gan'),
    ('info', '--set enc_widths=[-8,...]', lambda s: ['info', 'vae', '--set', 'enc_widths=[-8,16,32,64,64,64]'],
     'every width must be a positive integer'),
    ('info', '--set z_dim=1000000000000', lambda s: ['info', 'vae', '--set', 'z_dim=1000000000000'],
     'at most 1,000,000,000); change the --set'),
    # stage2, figures, reproduce, ship, bench, app: their numeric options, refused before any work with their range
    ('stage2', '--minutes 0', lambda s: ['stage2', s.run(), '--minutes', 0, '--out', s.path('s2')], '--minutes must be positive'),
    ('stage2', '--steps 0', lambda s: ['stage2', s.run(), '--steps', 0, '--out', s.path('s2')], '--steps must be positive: an integer'),
    ('stage2', '--n 0', lambda s: ['stage2', s.run(), '--n', 0, '--out', s.path('s2')], '--n must be positive'),
    ('stage2', '--seed -1', lambda s: ['stage2', s.run(), '--seed', -1, '--out', s.path('s2')], '--seed must be an integer from 0'),
    ('stage2-evaluate', '--seed -1', lambda s: ['stage2-evaluate', s.run(), '--seed', -1, '--out', s.path('e')],
     '--seed must be an integer from 0'),
    ('stage2-evaluate', '--batch-size 0', lambda s: ['stage2-evaluate', s.run(), '--batch-size', 0, '--out', s.path('e')],
     '--batch-size must be a positive integer'),
    ('evaluate', '--seed -1', lambda s: ['evaluate', s.run(), '--seed', -1, '--out', s.path('e')], '--seed must be an integer from 0'),
    ('figures', '--seed -1', lambda s: ['figures', s.run(), '--seed', -1, '--out', s.path('f')], '--seed must be an integer from 0'),
    ('reproduce', '--steps-per-model 0', lambda s: ['reproduce', '--train', '--steps-per-model', 0, '--out', s.path('r')],
     '--steps-per-model must be positive: an integer from 1'),
    ('reproduce', '--seeds 0', lambda s: ['reproduce', '--train', '--seeds', 0, '--out', s.path('r')], '--seeds must be positive'),
    ('reproduce', '--seeds 1000', lambda s: ['reproduce', '--train', '--seeds', 1000, '--out', s.path('r')],
     '--seeds must be an integer from 1 to 100'),
    ('reproduce', '--size 100000', lambda s: ['reproduce', '--size', 100000, '--out', s.path('r')], '--size must be an integer from 16'),
    ('ship', '--snapshots -1', lambda s: ['ship', s.run(), '--name', 'x', '--snapshots', -1, '--out', s.path('ship')],
     '--snapshots must be an integer from 0'),
    ('ship-results', '--seed -1', lambda s: ['ship-results', s.run(), '--role', 'vae-gan', '--seed', -1, '--out', s.path('res')],
     '--seed must be an integer from 0 to 100'),
    ('ship-classifiers', '--size 0', lambda s: ['ship-classifiers', '--size', 0, '--out', s.path('c')],
     '--size must be a positive integer'),
    ('protocol', 'score: a role the run does not train',
     lambda s: ['protocol', 'score', s.run(), '--role', 'acvae-gan-noreg', '--seed', 0, '--out', s.path('p.json')],
     "not the role 'acvae-gan-noreg'"),
    ('protocol', 'score: no run there', lambda s: ['protocol', 'score', s.path('none'), '--role', 'vae-gan', '--seed', 0,
                                                   '--out', s.path('p.json')], 'is not a crvae run'),
    ('protocol', 'readings: a role the run does not train',
     lambda s: ['protocol', 'readings', s.run(), '--role', 'acvae-gan-noreg', '--seed', 0, '--out', s.path('r.json')],
     "not the role 'acvae-gan-noreg'"),
    ('prior-fit', '--n 1', lambda s: ['prior-fit', s.run(), '--n', 1], '--n must be an integer from 2'),
    ('ship', 'weights that hold NaN',
     lambda s: ['ship', s.run(_nan_weights), '--name', 'nan-avatars64', '--out', s.path('ship')],
     'NaN or infinite values before any cast'),
    ('prior-fit', 'no run there', lambda s: ['prior-fit', s.path('none')], 'is not a crvae run'),
    ('bench', '--steps 0', lambda s: ['bench', '--steps', 0], '--steps must be a positive integer'),
    ('bench', '--batch -1', lambda s: ['bench', '--batch', -1], '--batch must be a positive integer'),
    ('app', '--port 99999', lambda s: ['app', '--port', 99999], '--port 99999: use 1..65535'),
    ('crvae', 'an unknown command', lambda s: ['trian', 'cvae'], "invalid choice: 'trian'"),
    # writes only onto what is ours: a device node, a FIFO or a folder where a file goes
    ('sample', '--out a device node', lambda s: ['sample', s.run(), '--out', _device(s)],
     'not a regular file, and crvae replaces only regular files; choose another path (--out)'),
    ('sample', '--out a FIFO', lambda s: ['sample', s.run(), '--out', _fifo(s)], 'it is a FIFO (named pipe), not a regular file'),
    ('sample', '--out a folder', lambda s: ['sample', s.run(), '--out', s.root], 'it is a folder, not a regular file'),
    ('edit', '--compare a FIFO', lambda s: ['edit', s.run(), s.face(), '--set', 'Eyeglasses=1', '--attrs', 'Smiling', '--out',
                                            s.path('e.png'), '--compare', _fifo(s)], 'choose another path (--compare)'),
    ('edit', '--out a device node', lambda s: ['edit', s.run(), s.face(), '--set', 'Eyeglasses=1', '--out', _device(s)],
     'not a regular file'),
    ('reconstruct', '--out a folder', lambda s: ['reconstruct', s.run(), s.face(), '--out', s.root], 'it is a folder, not a regular file'),
    ('reconstruct', '--compare a device node', lambda s: ['reconstruct', s.run(), s.face(), '--out', s.path('r.png'), '--compare',
                                                          _device(s)], 'choose another path (--compare)'),
    # train --out: only an empty folder, a run of this model, or --resume/--force
    ('train', "--out a folder of the user's own files", lambda s: ['train', 'cvae', '--n', 1000, '--out', _users_folder(s),
                                                                     '--no-progress'],
     'is not empty and holds no crvae run'),
    ('train', "--out another tool's run.json and CSVs", lambda s: ['train', 'cvae', '--n', 1000, '--out', _other_tools_run(s),
                                                                     '--no-progress'], 'holds a run.json that crvae cannot use'),
    ('train', '--out a cvae run, training vae', lambda s: ['train', 'vae', '--n', 1000, '--out', s.run(), '--no-progress'],
     'is a cvae run, not vae'),
    ('train', '--out a cvae run stopped before its checkpoint, training vae',
     lambda s: ['train', 'vae', '--n', 1000, '--out', s.run(_killed_before_first_checkpoint), '--no-progress'], 'is a cvae run, not vae'),
    ('train', '--out a run of checkpoint format 2', lambda s: ['train', 'cvae', '--n', 1000, '--out', s.run(_run_entry(format_version=2)),
                                                              '--no-progress'], 'was written in checkpoint format 2'),
    ('train', '--out a file', lambda s: ['train', 'cvae', '--n', 1000, '--out', s.file()], 'is a file, not a folder'),
    ('train', '--resume while another process writes the run', lambda s: _resume(s, _locked),
     'is being written by another crvae process (pid 4242)'),
    ('train', '--out a folder another process writes', lambda s: ['train', 'cvae', '--n', 1000, '--out', _locked(s.path('busy'))],
     'is being written by another crvae process (pid 4242)'),
    ('train', '--resume: log.csv is a FIFO', lambda s: _resume(s, _as_fifo('log.csv')),
     'log.csv is a FIFO (named pipe), not a regular file'),
    ('train', '--resume: curves.csv links to a 1 GiB file', lambda s: _resume(s, _link_to_sparse('curves.csv', s)),
     'is larger than any crvae CSV file'),
    ('train', '--resume: run.json is a FIFO', lambda s: _resume(s, _as_fifo('run.json')),
     'run.json is a FIFO (named pipe), not a regular file'),
    # --set: values outside their sense, keys that are not settings
    ('train', '--set z_channels=0', lambda s: _train(s, '--set', 'z_channels=0'), 'z_channels=0: must be a positive integer'),
    ('train', '--set bn_eps=0', lambda s: _train(s, '--set', 'bn_eps=0'), 'bn_eps=0.0: must be a positive number'),
    ('train', '--set lr=-0.001', lambda s: _train(s, '--set', 'lr=-0.001'), 'lr=-0.001: must be a positive number'),
    ('train', '--set lr=0', lambda s: _train(s, '--set', 'lr=0'), 'lr=0.0: must be a positive number'),
    ('train', '--set lr_d=-1', lambda s: _train(s, '--set', 'lr_d=-1'), 'lr_d=-1.0: must be a positive number'),
    ('train', '--set lr_d_heads=0', lambda s: _train(s, '--set', 'lr_d_heads=0'), 'lr_d_heads=0.0: must be a positive number'),
    ('train', '--set lstm_lr_factor=0', lambda s: _train(s, '--set', 'lstm_lr_factor=0'), 'lstm_lr_factor=0.0: must be a positive'),
    ('train', '--set d_fc=0', lambda s: _train(s, '--set', 'd_fc=0'), 'd_fc=0: must be a positive integer'),
    ('train', '--set lstm_layers=0', lambda s: _train(s, '--set', 'lstm_layers=0'), 'lstm_layers=0: must be a positive integer'),
    ('train', '--set mbd_dims=0', lambda s: _train(s, '--set', 'mbd_dims=0'), 'mbd_dims=0: must be a positive integer'),
    ('train', '--set dec_widths with a 0', lambda s: _train(s, '--set', 'dec_widths=[64,64,64,32,16,16,0]'),
     'every width must be a positive integer'),
    ('train', '--set enc_stem=-1', lambda s: _train(s, '--set', 'enc_stem=-1'), 'enc_stem=-1: must be 0 (none) or a positive integer'),
    ('train', '--set model=vae', lambda s: _train(s, '--set', 'model=vae'), '--set model: not a setting: the command names the model'),
    ('train', '--set preset=paper', lambda s: _train(s, '--set', 'preset=paper'), '--set preset: not a setting'),
    ('train', '--resume --set lr=-1', lambda s: _resume(s, None, '--set', 'lr=-1'), 'lr=-1.0: must be a positive number'),
    ('stage2', '--set preset=paper', lambda s: ['stage2', s.run(), '--set', 'preset=paper', '--out', s.path('s2')],
     '--set preset=paper: unknown key'),
    # generated faces checked; weights of another kind of number refused; reads bounded
    ('sample', 'a BatchNorm running_var below 0', lambda s: _sample(s, s.run(_negative_var)),
     'hold NaN or infinite values: its weights are damaged'),
    ('sample', 'weights of 1e30', lambda s: _sample(s, s.run(_huge_weights)), 'its weights are damaged'),
    ('edit', 'a BatchNorm running_var below 0', lambda s: ['edit', s.run(_negative_var), s.face(), '--set', 'Eyeglasses=1', '--out',
                                                             s.path('e.png')], 'hold NaN or infinite values: its weights are damaged'),
    ('reconstruct', 'weights of 1e30', lambda s: ['reconstruct', s.run(_huge_weights), s.face(), '--out', s.path('r.png')],
     'its weights are damaged'),
    ('sample', 'int8 weights', lambda s: _sample(s, s.run(_int8_weights)), 'hold torch.int8 values for'),
    ('sample', 'bool weights', lambda s: _sample(s, s.run(_bool_weights)), 'hold torch.bool values for'),
    ('reconstruct', 'int8 weights', lambda s: ['reconstruct', s.run(_int8_weights), s.face(), '--out', s.path('r.png')],
     'the file is damaged or was not written by crvae'),
    ('sample', 'run.json is a FIFO', lambda s: _sample(s, s.run(_as_fifo('run.json'))), 'is a FIFO (named pipe), not a regular file'),
    ('sample', 'run.json links to a 1 GiB file', lambda s: _sample(s, s.run(_link_to_sparse('run.json', s))),
     'is larger than any crvae JSON file'),
    ('sample', 'model.safetensors is a FIFO', lambda s: _sample(s, s.run(_as_fifo('model.safetensors'))),
     'is a FIFO (named pipe), not a regular file, so it is not a crvae weights file'),
]

_HASHES: dict = {}    # (path, inode, size, mtime, ctime) -> sha1: a file whose status is unchanged is not read again

def _tree(root:Path) -> dict:
    """Every file and folder under `root`: its relative path -> the sha1 of its bytes (a folder: 'dir', a link: its target).
    A file whose inode, size, modification and change times are those of an earlier call is not read again (any write
    changes its change time, which no program can set back), unless that time is under 2 s old (git's 'racy' rule)."""
    import hashlib, stat, time
    out, now = {}, time.time()
    for p in sorted(root.rglob('*')):
        rel = str(p.relative_to(root))
        if p.is_symlink(): out[rel] = 'link:' + os.readlink(p); continue
        if p.is_dir(): out[rel] = 'dir'; continue
        st = p.stat()
        if not stat.S_ISREG(st.st_mode): out[rel] = f'special:{st.st_mode:o}'; continue   # a FIFO is never opened (it would wait)
        key = (str(p), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _HASHES or now - st.st_ctime_ns / 1e9 < 2: _HASHES[key] = hashlib.sha1(p.read_bytes()).hexdigest()
        out[rel] = _HASHES[key]
    return out

def run_case(case, scene:Scene) -> dict:
    """Run one bad-input case in-process, in the scene's folder (so a path that means 'here' would show): returns its
    command, what, exit code, stderr lines, whether a traceback appeared, and what changed in the scene (nothing, if it
    kept its promise)."""
    import io, contextlib
    from crvae.core import main
    command, what, make, fix = case
    argv = [str(a) for a in make(scene)]
    before, cwd = _tree(scene.root), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.chdir(scene.root)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main(argv)
            except SystemExit as e: code = e.code
    finally: os.chdir(cwd)
    after = _tree(scene.root)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    lines = [l for l in err.getvalue().splitlines() if l.strip()]
    scene.clean()
    return dict(command=command, what=what, code=code, lines=lines, message=lines[0] if len(lines) == 1 else err.getvalue(),
                traceback='Traceback' in err.getvalue(), changed=changed, fix=fix, argv=argv)

def case_problems(r:dict) -> list:
    """What a case's result breaks of the promise (an empty list: it kept it): exit code 2, one line on stderr naming
    the fix, no traceback, nothing changed."""
    bad = []
    if r['code'] != 2: bad.append(f"exit code {r['code']}")
    if len(r['lines']) != 1: bad.append(f"{len(r['lines'])} lines on stderr")
    if r['traceback']: bad.append('a traceback')
    if r['fix'] not in r['message']: bad.append(f"the message lacks {r['fix']!r}")
    if r['changed']: bad.append(f"changed {r['changed'][:3]}")
    return bad
