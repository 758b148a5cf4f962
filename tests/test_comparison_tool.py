"""tools/comparison.py starts the long comparison's runs in a fixed order: stopped runs resume first, then pending ones in
the plan's order, except the runs named with --first (scheduling only)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import comparison


def test_next_runs_order():
    rows = [dict(run=r, status=s) for r, s in (('a-seed0', 'scored'), ('b-seed0', 'running'), ('c-seed1', 'pending'),
                                                 ('d-seed1', 'stopped'), ('e-seed0', 'pending'), ('f-seed0', 'pending'))]
    assert [r['run'] for r in comparison.next_runs(rows)] == ['d-seed1', 'c-seed1', 'e-seed0', 'f-seed0']
    got = comparison.next_runs(rows, first=('f-seed0', 'e-seed0'))
    assert [r['run'] for r in got] == ['d-seed1', 'e-seed0', 'f-seed0', 'c-seed1']      # --first keeps the plan's order among them
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
