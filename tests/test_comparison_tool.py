"""tools/comparison.py starts the long comparison's runs in a fixed order: stopped runs resume first, then pending ones in
the plan's order, except the runs named with --first, in the order given (scheduling only)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import comparison


def test_next_runs_order():
    rows = [dict(run=r, status=s) for r, s in (('a-seed0', 'scored'), ('b-seed0', 'running'), ('c-seed1', 'pending'),
                                                 ('d-seed1', 'stopped'), ('e-seed0', 'pending'), ('f-seed0', 'pending'))]
    assert [r['run'] for r in comparison.next_runs(rows)] == ['d-seed1', 'c-seed1', 'e-seed0', 'f-seed0']
    got = comparison.next_runs(rows, first=('f-seed0', 'e-seed0'))
    assert [r['run'] for r in got] == ['d-seed1', 'f-seed0', 'e-seed0', 'c-seed1']      # --first in the order given
    assert comparison.next_runs([dict(run='a', status='scored')], first=('a',)) == []   # never restarts a finished run


def test_ship_commands():
    "`ship` waits for every shipped model's seed 0; then ships each, the later seeds' scores, and drops the shorter runs' scores."
    import pytest
    runs = Path('RUNS')
    rows = [dict(run=f'{m}-seed{s}', role=m, seed=s, steps=10000, steps_done=st, status=stat)
            for m, s, st, stat in (('a', 0, 10000, 'scored'), ('a', 1, 10000, 'scored'), ('a', 2, 4000, 'stopped'),
                                   ('b', 0, 9000, 'running'), ('b', 1, 0, 'pending'))]
    shipped, results = {'a': 5, 'b': 0}, {'a-seed1.json': 2500, 'a-seed2.json': 2500, 'b-seed1.json': 2500, 'c-seed1.json': 2500}
    with pytest.raises(ValueError, match=r'b-seed0 \(9,000/10,000, running\)'): comparison.ship_commands(rows, runs, shipped, results)
    rows[3].update(steps_done=10000, status='scored')
    cmds, drop = comparison.ship_commands(rows, runs, shipped, results)
    assert cmds == [['crvae', 'ship', 'RUNS/a-seed0', '--name', 'a-avatars64', '--force', '--snapshots', '5'],
                    ['crvae', 'ship-results', 'RUNS/a-seed1', '--role', 'a', '--seed', '1'],
                    ['crvae', 'ship', 'RUNS/b-seed0', '--name', 'b-avatars64', '--force']]
    assert drop == ['a-seed2.json', 'b-seed1.json']       # a-seed1.json is rewritten; c is not shipped: left alone
    assert comparison.ship_commands(rows, runs, shipped, dict(results, **{'b-seed1.json': 10000}))[1] == ['a-seed2.json']
    with pytest.raises(ValueError, match='c: not in the plan'): comparison.ship_commands(rows, runs, {'c': 0}, {})


def test_study_matches(tmp_path):
    "The completion study ships with the checkpoints only when it was computed on the very weights that ship."
    import hashlib, json
    (tmp_path/'a-avatars64').mkdir(); (tmp_path/'a-avatars64'/'model.safetensors').write_bytes(b'weights')
    study = tmp_path/'study.json'
    def write(h, name='a-avatars64'): study.write_text(json.dumps(dict(checkpoints={'a': dict(name=name, weights_sha256=h)})))
    write(hashlib.sha256(b'weights').hexdigest()); assert comparison.study_matches(study, tmp_path)
    write(hashlib.sha256(b'other').hexdigest()); assert not comparison.study_matches(study, tmp_path)
    write(hashlib.sha256(b'weights').hexdigest(), 'b-avatars64'); assert not comparison.study_matches(study, tmp_path)


def test_device_pick_leaves_the_next_runs_and_the_folders_here():
    "A lent GPU machine takes pending runs only, after the two the watcher here starts next."
    rows = [dict(run=r, status=s) for r, s in (('a-seed0', 'scored'), ('b-seed1', 'running'), ('c-seed1', 'stopped'),
                                                 ('d-seed1', 'pending'), ('e-seed1', 'pending'), ('f-seed1', 'pending'),
                                                 ('g-seed1', 'pending'), ('h-seed1', 'pending'))]
    assert comparison.device_pick(rows, 2) == ['e-seed1', 'f-seed1']      # c resumes here, d is next here
    assert comparison.device_pick(rows, 9) == ['e-seed1', 'f-seed1', 'g-seed1', 'h-seed1']
    assert comparison.device_pick(rows, 9, skip=0) == ['d-seed1', 'e-seed1', 'f-seed1', 'g-seed1', 'h-seed1']
    assert comparison.device_pick(rows[:3], 9) == []


def test_device_keep_keeps_what_the_machine_can_finish():
    "The runs kept are the most advanced ones whose remaining steps together fit the machine's rate and the time left."
    done = {'a': 1000, 'b': 3000, 'c': 2000}
    assert comparison.device_keep(done, rate=30, left=1000, steps=10000) == ['b', 'c', 'a']    # 24,000 steps left <= 30,000
    assert comparison.device_keep(done, rate=20, left=1000, steps=10000) == ['b', 'c']         # 15,000 <= 20,000 < 24,000
    assert comparison.device_keep(done, rate=10, left=700, steps=10000) == ['b']
    assert comparison.device_keep(done, rate=5, left=100, steps=10000) == []                   # none can finish: stop them all
    assert comparison.device_keep({'x': 0, 'y': 0}, rate=10, left=1000, steps=10000) == ['x']  # ties: the plan's order


def test_unpack_takes_only_scored_runs_without_a_twin_here(tmp_path, monkeypatch):
    "`unpack` copies each run the machine scored into the results and the manifest; unscored runs and runs that also have a folder here are named and left out."
    import json, tarfile
    res, runs, src = tmp_path/'results', tmp_path/'runs', tmp_path/'src'/'protocol'
    monkeypatch.setattr(comparison, 'RESULTS', res)
    res.mkdir(); (runs/'c-seed1').mkdir(parents=True)
    comparison._write_manifest([dict(run=r, role=r[:1], seed=1, steps=10000, steps_done=0, status='pending', code_commit='')
                                for r in ('a-seed1', 'b-seed1', 'c-seed1')])
    for r in ('a-seed1', 'c-seed1'):
        (src/r).mkdir(parents=True)
        for f in ('scores.json', 'readings.json', 'curves.csv'): (src/r/f).write_text(f'{r} {f}')
    report = {r: dict(steps_done=10000 if r != 'b-seed1' else 4000, steps=10000, images_per_s=900.0, scored=r != 'b-seed1',
                      problem='' if r != 'b-seed1' else 'stopped at step 4000') for r in ('a-seed1', 'b-seed1', 'c-seed1')}
    (src/'device-report.json').write_text(json.dumps(dict(commit='abc1234', runs=report)))
    with tarfile.open(tmp_path/'protocol.tar.gz', 'w:gz') as t: t.add(src, arcname='protocol')
    assert comparison.unpack(runs, tmp_path/'protocol.tar.gz') == ['a-seed1']
    assert (res/'a-seed1'/'scores.json').read_text() == 'a-seed1 scores.json' and not (res/'c-seed1').exists()
    m = comparison._read_manifest()
    assert (m['a-seed1']['status'], m['a-seed1']['steps_done'], m['a-seed1']['code_commit']) == ('scored', '10000', 'abc1234')
    assert m['b-seed1']['status'] == m['c-seed1']['status'] == 'pending'
    assert comparison.unpack(runs, tmp_path/'protocol.tar.gz') == []        # a second time: already there


def test_state_restarts_a_run_whose_folder_is_gone(tmp_path, monkeypatch):
    "On a bare machine a run the manifest calls stopped has no checkpoints left: it is pending from step 0; scored runs stay."
    res, runs = tmp_path/'results', tmp_path/'runs'
    monkeypatch.setattr(comparison, 'RESULTS', res)
    (res/'a-seed0').mkdir(parents=True); (res/'a-seed0'/'scores.json').write_text('{}'); (runs/'c-seed1').mkdir(parents=True)
    comparison._write_manifest([dict(run='a-seed0', role='a', seed=0, steps=10000, steps_done=10000, status='scored', code_commit='abc'),
                                dict(run='b-seed1', role='b', seed=1, steps=10000, steps_done=8299, status='stopped', code_commit='abc'),
                                dict(run='c-seed1', role='c', seed=1, steps=10000, steps_done=3085, status='stopped', code_commit='abc')])
    plan = [dict(name=n, role=n[:1], seed=int(n[-1]), steps=10000) for n in ('a-seed0', 'b-seed1', 'c-seed1')]
    got = {r['run']: (r['steps_done'], r['status'], r['code_commit']) for r in comparison.state(runs, plan, 'def')}
    assert got == {'a-seed0': (10000, 'scored', 'abc'), 'b-seed1': (0, 'pending', ''), 'c-seed1': (0, 'stopped', 'abc')}


def test_restart_refuses_a_folder_inside_the_repository():
    "tools/comparison_restart.sh keeps the large run folders out of the repository: one line, exit code 2."
    import subprocess
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run(['bash', 'tools/comparison_restart.sh', str(repo/'runs-here')], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith('error: DIR must be outside the repository'), r.stderr
    assert not (repo/'runs-here').exists()


def test_training_faces_are_checked(tmp_path, monkeypatch):
    "Every run trains on the same 30k faces: missing ones name the command that builds them, others must match FACES_SHA256."
    import hashlib, pytest
    with pytest.raises(ValueError, match='crvae data avatars --n 30000 --size 64 --seed 0'): comparison.training_faces(tmp_path)
    f = tmp_path/'avatars'/'avatars-64px-n30000-seed0-abc'/'images.npy'; f.parent.mkdir(parents=True); f.write_bytes(b'not the faces')
    with pytest.raises(ValueError, match="not the runs' eaba7ccd60c7.*rebuild it"): comparison.training_faces(tmp_path)
    monkeypatch.setattr(comparison, 'FACES_SHA256', hashlib.sha256(b'not the faces').hexdigest())
    assert comparison.training_faces(tmp_path) == f


def test_faces_and_commit_verbs(tmp_path, monkeypatch):
    "The restart script's two questions, answered from the command line: one line and exit code 2 when there is no answer."
    import subprocess
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, 'tools/comparison.py', 'faces'], cwd=repo, capture_output=True, text=True,
                       env=dict(__import__('os').environ, CRVAE_DATA=str(tmp_path)))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and r.stderr.startswith('error: no 30k training faces under'), r.stderr
    monkeypatch.setattr(comparison, 'RESULTS', tmp_path)
    assert comparison.manifest_commit() == ''
    comparison._write_manifest([dict(run=f'r{i}', role='r', seed=i, steps=1, steps_done=1, status='scored', code_commit=c)
                                for i, c in enumerate(['abc', '', 'def', 'abc'])])
    assert comparison.manifest_commit() == 'abc'
    r = subprocess.run([sys.executable, 'tools/comparison.py', 'commit'], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == '8e8eddd', r.stdout + r.stderr   # the repository's manifest
