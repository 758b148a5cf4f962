"""The bad-input table (`tests/helpers/bad_inputs.py`, also shown in nbs/09_reliability.ipynb) and the training-side
reliability behaviour of issue 18.

- every row of the table, in-process: exit code 2, exactly one line on stderr naming the fix, no traceback, nothing
  under the scene's folder written or changed (listing and bytes equal before and after);
- old checkpoints are never deleted through a link; checkpoints by time (`ckpt_minutes`); a run folder without a
  checkpoint starts again; temporaries of killed writers are removed, live ones kept; files get the user's umask;
  after a non-finite loss the advice works (`--resume --set lr=...`, or the same command again); sampling in batches;
- property tests (hypothesis, derandomized) for the `--set`, `--attrs` and run.json parsers.
Every training here is the small cvae of `SMALL_RUN` for at most two steps.
"""
import csv, json, os, shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import crvae.core as core
import crvae.cleanup as cleanup
import crvae.training as T
import crvae.config as C
from crvae.param_counts import MAX_PARAMS
from crvae.engine import NonFiniteError
from crvae.runs import load, check_buildable
from crvae.core import UserError
from crvae.reliability import SMALL_RUN
from helpers.bad_inputs import BAD_INPUTS, Scene, case_problems, run_case

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def scene(tmp_path_factory, faces_1k):
    with torch.random.fork_rng(devices=[]):
        yield Scene(tmp_path_factory.mktemp('bad-inputs')/'scene', faces_1k)


# -- the table ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('case', BAD_INPUTS, ids=[f'{c[0]}: {c[1]}' for c in BAD_INPUTS])
def test_bad_input(scene, case):
    "One row: exit code 2, one line naming the fix, no traceback, nothing written or changed."
    r = run_case(case, scene)
    assert not case_problems(r), (case_problems(r), r['argv'], r['message'])


def test_the_table_covers_every_command_with_60_cases():
    assert len(BAD_INPUTS) >= 60
    assert {c[0] for c in BAD_INPUTS} == set(core.command_index()) - {'version'} | {'crvae'}, 'every command with options'
    assert len({(c[0], c[1]) for c in BAD_INPUTS}) == len(BAD_INPUTS), 'each case once'


# -- training-side behaviour ------------------------------------------------------------------------------------------

def _train(faces, out, steps=2, resume=False, **kw):
    kw = dict(dict(progress=False, sample_every=0, eval_every=0, log_every=1, ckpt_every=1, device='cpu'), **kw)
    return T.train('cvae', out, steps=steps, faces=faces, resume=resume, sets=kw.pop('sets', SMALL_RUN), **kw)


def test_pruning_never_deletes_through_a_link(tmp_path, faces_1k, capsys):
    "RUN/checkpoints a link to another folder holding a step-* folder of its own: keep_checkpoints=1 deletes nothing there."
    elsewhere, run = tmp_path/'elsewhere', tmp_path/'run'
    (elsewhere/'step-0000000').mkdir(parents=True); (elsewhere/'step-0000000'/'precious').write_text('mine')
    run.mkdir(); (run/'checkpoints').symlink_to(elsewhere)
    _train(faces_1k, run, keep_checkpoints=1, force=True)            # a folder that is not a run: --force to train into it
    assert (elsewhere/'step-0000000'/'precious').read_text() == 'mine'
    assert sorted(p.name for p in elsewhere.iterdir()) == ['latest', 'step-0000000', 'step-0000001', 'step-0000002']
    assert 'crvae never deletes through a link' in capsys.readouterr().err


def test_checkpoints_by_time_and_a_run_without_one_starts_again(tmp_path, faces_1k, capsys, monkeypatch):
    "ckpt_minutes: a checkpoint after every step once the minutes pass (ckpt_every off); a folder with no checkpoint restarts."
    _train(faces_1k, tmp_path/'timed', ckpt_every=0, ckpt_minutes=1e-9, keep_checkpoints=5)
    assert sorted(p.name for p in (tmp_path/'timed'/'checkpoints').glob('step-*')) == ['step-0000001', 'step-0000002']
    run = tmp_path/'killed'
    real = T.Trainer.step
    def killed_at_step_2(self):
        if self.step_ == 1: raise NonFiniteError('stopped before the first checkpoint (a stand-in for SIGKILL)')
        return real(self)
    monkeypatch.setattr(T.Trainer, 'step', killed_at_step_2)
    with pytest.raises(UserError): _train(faces_1k, run, ckpt_every=0, ckpt_minutes=0)
    assert (run/'run.json').exists() and not (run/'checkpoints').exists() and not (run/'model.safetensors').exists()
    monkeypatch.setattr(T.Trainer, 'step', real)
    capsys.readouterr()
    assert _train(faces_1k, run)['step'] == 2                     # no --resume needed, no "already holds a run"
    assert 'stopped before its first checkpoint: starting it again from step 0' in capsys.readouterr().err
    steps = [r['step'] for r in csv.DictReader(open(run/'log.csv', newline=''))]
    assert steps == ['1', '2']


def test_temporaries_of_dead_writers_are_removed_on_the_next_run(tmp_path, faces_1k):
    run = tmp_path/'run'
    _train(faces_1k, run, steps=1)
    tag, dead = core._machine_tag(), 2**22 + 12345          # above Linux's largest pid: no such process
    assert not cleanup._pid_alive(dead)
    left = [run/f'.log.csv.pid{dead}-{tag}-abcd1234.tmp', run/'checkpoints'/f'.step-0000002.pid{dead}-{tag}-abcd1234.tmp',
            run/f'.run.json.pid{os.getpid()}-{tag}-live1234.tmp']
    left[0].write_text('half'); left[1].mkdir(); (left[1]/'model.safetensors').write_bytes(b'x')
    left[2].write_text('a live writer')
    _train(faces_1k, run, steps=2, resume=True)
    assert [p.exists() for p in left] == [False, False, True]


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        core.atomic_write_text(tmp_path/'f.txt', 'x')
        with core.atomic_dir(tmp_path/'d'): pass
        (tmp_path/'plain.txt').write_text('x')
    finally: os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777
    assert mode(tmp_path/'f.txt') == mode(tmp_path/'plain.txt') == 0o666 & ~umask
    assert mode(tmp_path/'d') == 0o777 & ~umask


def test_nonfinite_advice_can_be_followed(tmp_path, faces_1k, monkeypatch):
    "A non-finite loss at step 1 (no checkpoint): the same command again with a lower lr; at step 2: --resume --set lr=..., which works."
    real = T.generator_loss
    def nan_at(k):
        calls = []
        def loss(*a, **kw):
            total, terms, fakes = real(*a, **kw)
            calls.append(1)
            return (total * float('nan') if len(calls) == k else total), terms, fakes
        return loss
    run = tmp_path/'run'
    monkeypatch.setattr(T, 'generator_loss', nan_at(1))
    with pytest.raises(NonFiniteError, match=r'no checkpoint was written yet: run the same command again with a lower learning rate, '
                                               r'--set lr=3e-05'):
        _train(faces_1k, run)
    monkeypatch.setattr(T, 'generator_loss', nan_at(2))
    with pytest.raises(NonFiniteError, match=rf'last checkpoint is intact \(step-0000001\): resume it .*'
                                               rf'crvae train cvae --out {run} --resume --set lr=3e-05'):
        _train(faces_1k, run)
    monkeypatch.setattr(T, 'generator_loss', real)
    assert _train(faces_1k, run, resume=True, sets=['lr=3e-05'])['step'] == 2
    info = T.read_run(run)
    assert info['model_config']['lr'] == 3e-05 and info['resumed_with'] == [dict(step=1, sets=['lr=3e-05'])]
    with pytest.raises(UserError, match='these --set items would change it'): _train(faces_1k, run, steps=3, resume=True, sets=['kappa=1'])


def test_resume_with_the_same_rates_is_unchanged(tmp_path, faces_1k):
    "The rates a resume re-applies from the config are the ones the checkpoint holds: resumed weights equal an uninterrupted run's."
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0); _train(faces_1k, tmp_path/'ref', steps=2)
        torch.manual_seed(0); _train(faces_1k, tmp_path/'run', steps=1)
        _train(faces_1k, tmp_path/'run', steps=2, resume=True)
    a, b = (T.read_weights(tmp_path/r/'model.safetensors') for r in ('ref', 'run'))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sampling_works_in_batches(scene, monkeypatch):
    import crvae.sampling as S
    model = load(scene.base)
    whole = S.sample_faces(model, n=40, seed=3)['images']
    monkeypatch.setattr(S, 'DECODE_BATCH', 16)
    parts = S.sample_faces(model, n=40, seed=3)['images']
    assert parts.shape == whole.shape == (40, 3, 64, 64)
    assert (parts.int() - whole.int()).abs().max() <= 1


# -- writes only onto what is ours (issue 29) ---------------------------------------------------------------------------

def test_a_device_node_is_never_replaced(tmp_path):
    "A private character device node (mknod, as root; the numbers of /dev/null) where a file goes: refused, and still a device."
    import stat
    node = tmp_path/'node'
    try: os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError): pytest.skip('mknod needs root (CAP_MKNOD); the FIFO cases of BAD_INPUTS run everywhere')
    with pytest.raises(UserError, match='it is a character device, not a regular file'): core.atomic_write_bytes(node, b'png')
    assert stat.S_ISCHR(os.stat(node).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ['node']


def test_two_writers_into_one_out(tmp_path, faces_1k, monkeypatch):
    """While `crvae train` writes a run (here: during its first step), a second `crvae train` into the same --out, another
    process, is refused with one line and changes nothing; the first goes on to its end."""
    import subprocess, sys
    run, seen = tmp_path/'run', {}
    real = T.Trainer.step
    def step_with_a_second_writer(self):
        if self.step_ == 0:
            seen['before'] = sorted(p.name for p in run.iterdir())
            p = subprocess.run([sys.executable, '-m', 'crvae', 'train', 'cvae', '--n', '1000', '--steps', '2', '--out', str(run),
                                '--no-progress'], capture_output=True, text=True, timeout=300)
            seen.update(code=p.returncode, err=p.stderr, after=sorted(p.name for p in run.iterdir()))
        return real(self)
    monkeypatch.setattr(T.Trainer, 'step', step_with_a_second_writer)
    assert _train(faces_1k, run)['step'] == 2
    assert seen['code'] == 2 and len(seen['err'].strip().splitlines()) == 1, seen['err']
    assert f'{run} is being written by another crvae process (pid {os.getpid()})' in seen['err']
    assert seen['after'] == seen['before']
    assert not (run/'.lock').exists()                                   # the lock goes with its writer


def test_a_dead_writers_lock_is_taken_over(tmp_path, faces_1k, capsys):
    "A lock file left by a writer killed outright (SIGKILL: no cleanup) does not block the next run: taken over with a note."
    import signal, subprocess, sys
    run = tmp_path/'run'
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from crvae.runs import run_lock\n'
                               'with run_lock(sys.argv[1]): print("held", flush=True); time.sleep(600)', str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(UserError, match=f'being written by another crvae process \\(pid {holder.pid}\\)'): _train(faces_1k, run)
    finally:
        holder.send_signal(signal.SIGKILL); holder.wait()
    assert (run/'.lock').read_text().split() == [str(holder.pid)]      # left behind
    assert _train(faces_1k, run)['step'] == 2
    assert f'was locked by process {holder.pid}, which no longer runs: its lock is taken over' in capsys.readouterr().err


def test_force_keeps_the_users_files_and_prunes_only_crvaes(tmp_path, faces_1k):
    "--force into a folder of the user's files: crvae's names are replaced, the rest kept; pruning skips step-* folders not crvae's."
    run = tmp_path/'mine'
    (run/'checkpoints'/'step-0000009').mkdir(parents=True); (run/'checkpoints'/'step-0000009'/'notes.txt').write_text('mine')
    (run/'snapshots').mkdir(); (run/'snapshots'/'step-0000009.safetensors').write_bytes(b'my own weights')
    (run/'notes.txt').write_text('mine'); (run/'log.csv').write_text('a,b\n1,2\n')
    with pytest.raises(UserError, match='is not empty and holds no crvae run'): _train(faces_1k, run)
    _train(faces_1k, run, steps=3, keep_checkpoints=1, snapshot_every=1, keep_snapshots=1, force=True)
    assert (run/'notes.txt').read_text() == (run/'checkpoints'/'step-0000009'/'notes.txt').read_text() == 'mine'
    assert (run/'snapshots'/'step-0000009.safetensors').read_bytes() == b'my own weights'
    assert sorted(p.name for p in (run/'checkpoints').iterdir()) == ['latest', 'step-0000003', 'step-0000009']
    assert sorted(p.name for p in (run/'snapshots').iterdir()) == ['step-0000003.safetensors', 'step-0000009.safetensors']
    assert [r['step'] for r in csv.DictReader(open(run/'log.csv', newline=''))] == ['1', '2', '3']


def test_resume_drops_a_torn_last_log_row(tmp_path, faces_1k):
    "A writer killed inside a log row (the log ends in '3', no line end): --resume keeps whole rows only, and the run verifies."
    from crvae.reliability import verify_run
    run = tmp_path/'run'
    _train(faces_1k, run, steps=3, ckpt_every=2)
    with open(run/'log.csv', 'a') as f: f.write('3')
    _train(faces_1k, run, steps=5, resume=True)
    assert [r['step'] for r in csv.DictReader(open(run/'log.csv', newline=''))] == ['1', '2', '3', '4', '5']
    verify_run(run)


# -- property tests -------------------------------------------------------------------------------------------------

SET_KEYS = sorted((C.MODEL_FIELDS | C.TRAIN_FIELDS) - {'model', 'preset'})
SET_VALUES = st.one_of(st.integers(-10**13, 10**13).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.sampled_from(['[-8,16,32,64,64,64]', '[8,16,32,64,64,1000000000]', '1e15', '-1', '0', 'NaN', '"x"', '[]',
                                        'true', 'null', '{}', '[1,"a"]']))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.sampled_from(['cvae', 'vae', 'crvae-gan']), st.lists(st.tuples(st.sampled_from(SET_KEYS), SET_VALUES), max_size=3))
def test_set_items_give_a_buildable_config_or_one_line(model, items):
    "Random --set items: configs of a model under the parameter bound (built on the meta device), or a one-line UserError."
    try: mcfg, tcfg = T.make_configs(model, 'tiny', [f'{k}={v}' for k, v in items], data_attrs=40)
    except UserError as e:
        assert '\n' not in str(e); return
    assert check_buildable(mcfg, '') <= MAX_PARAMS


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(['Smiling', '-Smiling', 'Smiling=2', 'smiling=TRUE', '+Bald', '=1', ',,'])),
                max_size=4).map(','.join))
def test_attrs_parse_or_one_line(text):
    from crvae.avatars import AVATAR_ATTRIBUTES
    from crvae.sampling import parse_attrs
    try: out = parse_attrs(text, AVATAR_ATTRIBUTES)
    except UserError as e:
        assert '\n' not in str(e); return
    assert set(out) <= set(AVATAR_ATTRIBUTES) and set(out.values()) <= {-1.0, 1.0}


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**16, 10**16) | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
ENTRIES = ['data', 'data.n', 'data.size', 'data.root', 'data.attr_names', 'data.attr_prevalence', 'data.seed', 'model_config.z_dim',
           'model_config.enc_widths', 'model_config.z_channels', 'train_config', 'train_config.n', 'train_config.seed',
           'train_config.ckpt_minutes', 'train_config.data', 'model']


@pytest.fixture(scope='module')
def scratch(scene, tmp_path_factory):
    return Path(shutil.copytree(scene.base, tmp_path_factory.mktemp('scratch')/'r'))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.tuples(st.sampled_from(ENTRIES), JSON), st.tuples(st.just('nested'), st.integers(1, 200_000))))
def test_run_json_reads_or_one_line(scratch, case):
    """A run.json with one entry replaced by random JSON, or nested thousands deep: `load` and the resume-side readers give
    a model and configs or a one-line UserError, never another exception."""
    where, value = case
    good = (scratch/'run.json').read_text()
    if where == 'nested': text = '[' * value + ']' * value
    else:
        d = json.loads(good); *parents, last = where.split('.'); node = d
        for k in parents: node = node[k]
        node[last] = value
        text = json.dumps(d)
    (scratch/'run.json').write_text(text)
    try:
        info = T.read_run(scratch)
        T.config_from_dict(T.TrainConfig, info.get('train_config') or {})
        load(scratch)
    except UserError as e: assert '\n' not in str(e)
    finally: (scratch/'run.json').write_text(good)
