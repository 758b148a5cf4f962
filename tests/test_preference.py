"The preference study: Wilson intervals against SciPy, an append-only log safe under concurrent and torn writes, seeded trials."
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from crvae.core import UserError
from crvae.preference import (CHOICE_COLUMNS, PreferenceStudy, PreferenceWidget, append_row, preference_table, read_rows,
                              table2_column, wilson_interval)
from crvae.training import train


def _row(**kw):
    r = dict(time='2024-01-01T00:00:00', study='s', rater='r', trial=0, seed=0, attrs='Bald,Smiling', shown='a|b|c',
             choice='b', position=1)
    r.update(kw)
    return r


@pytest.mark.parametrize('level', [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(level):
    from scipy.stats import binomtest
    for n in (1, 2, 7, 40, 200):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ref = binomtest(k, n).proportion_ci(confidence_level=level, method='wilson')
            lo, hi = wilson_interval(k, n, level)
            assert abs(lo - ref.low) < 1e-9 and abs(hi - ref.high) < 1e-9, (k, n, level)
            assert lo <= k / n <= hi
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(UserError): wilson_interval(3, 2)
    with pytest.raises(UserError): wilson_interval(1, 2, level=1.5)


def _writer(path, who, n):
    for i in range(n): append_row(path, _row(rater=f'w{who}', trial=i, attrs='x' * (i % 7) * 300))   # lines up to ~2 KB


def test_concurrent_appends_are_whole_lines(tmp_path):
    "Four processes appending 50 rows each: one header, 200 intact rows, nothing lost or interleaved."
    path = tmp_path/'log.csv'
    ctx = mp.get_context('fork')
    procs = [ctx.Process(target=_writer, args=(path, w, 50)) for w in range(4)]
    for p in procs: p.start()
    for p in procs: p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    rows, bad = read_rows(path)
    assert bad == 0 and len(rows) == 200
    assert path.read_text().count('time,study,rater') == 1
    for w in range(4): assert sorted(r['trial'] for r in rows if r['rater'] == f'w{w}') == list(range(50))


def test_torn_write_and_foreign_file(tmp_path):
    path = tmp_path/'log.csv'
    append_row(path, _row(trial=0))
    size = path.stat().st_size
    with open(path, 'ab') as f: f.write(b'2024-01-01T00:00:01,s,r,1,0,Bal')          # a crash mid-write
    append_row(path, _row(trial=2))
    assert path.stat().st_size > size                                                    # appended, never truncated
    rows, bad = read_rows(path)
    assert [r['trial'] for r in rows] == [0, 2] and bad == 1
    with open(path, 'ab') as f: f.write(b'2024-01-01T00:00:03,s,r,3,0,,a|b|c,c,9\n')     # a choice not at its position
    with open(path, 'ab') as f: f.write(b'2024-01-01T00:00:04,s,r,4')                    # a torn last line
    rows, bad = read_rows(path)
    assert [r['trial'] for r in rows] == [0, 2] and bad == 3
    other = tmp_path/'other.csv'; other.write_text('a,b\n1,2\n')
    with pytest.raises(UserError, match='not a preference log'): append_row(other, _row())
    assert other.read_text() == 'a,b\n1,2\n'
    with pytest.raises(UserError, match='needs'): append_row(path, {'time': 1})
    assert read_rows(tmp_path/'none.csv') == ([], 0)


def test_table_three_way():
    rows = [_row(choice=c, position='abc'.index(c), shown='a|b|c') for c in 'aaabbc'] + [_row(study='other', choice='c', position=2)]
    rows = [dict(r, trial=int(r['trial']), position=int(r['position'])) for r in rows]
    t = preference_table(rows, study='s')
    assert [(r['model'], r['shown'], r['chosen'], r['preference']) for r in t] == \
           [('a', 6, 3, 50.0), ('b', 6, 2, 33.3), ('c', 6, 1, 16.7)]
    assert sum(r['chosen'] for r in t) == 6 and t[0]['ci_low'] < 50 < t[0]['ci_high']
    col = table2_column(t)
    assert col[0]['human preference % (95% CI)'].startswith('50.0 [')
    assert preference_table([], models=['a'])[0]['preference'] is None


@pytest.fixture(scope='module')
def runs(tmp_path_factory, faces_1k):
    n = torch.get_num_threads(); torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('pref')
    for name in ('acvae-gan', 'cvae-gan', 'crvae-gan'):
        train(name, root/name, steps=1, faces=faces_1k, sets=['batch_size=16'], progress=False, sample_every=0, ckpt_every=0)
    yield root
    torch.set_num_threads(n)


def test_trials_seeded_random_order_same_attributes(runs, faces_1k, tmp_path, monkeypatch):
    import crvae.preference as P
    seen = []
    real = P.render
    def spy(model, z, a=None, batch_size=64):
        seen.append((model.name, None if a is None else a.clone())); return real(model, z, a, batch_size)
    monkeypatch.setattr(P, 'render', spy)
    mk = lambda seed: PreferenceStudy([runs/'acvae-gan', runs/'cvae-gan', runs/'crvae-gan'], tmp_path/'c.csv',
                                      n_trials=12, seed=seed, data=faces_1k)
    s1, s2 = mk(0), mk(0)
    orders = [tuple(s1.trial(t)['shown']) for t in range(12)]
    assert orders == [tuple(s2.trial(t)['shown']) for t in range(12)]                   # seeded
    assert len(set(orders)) >= 3                                                       # random per trial
    assert orders != [tuple(mk(1).trial(t)['shown']) for t in range(12)]
    assert all(sorted(o) == ['acvae-gan', 'crvae-gan', 'cvae-gan'] for o in orders)
    s1._cache.clear(); seen.clear(); tr = s1.trial(7)
    cond = [a for name, a in seen if name != 'crvae-gan']
    assert len(cond) == 2 and torch.equal(cond[0], cond[1])                            # the same attributes for both
    assert [name for name, _ in seen] == tr['shown']
    assert tr['attrs'] == ','.join(n for n, v in zip(s1.attr_names, cond[0][0].tolist()) if v > 0)
    assert s1.study != mk(1).study
    with pytest.raises(UserError, match='2 or 3 runs'): PreferenceStudy([runs/'acvae-gan'], tmp_path/'x.csv')
    with pytest.raises(UserError, match='distinct'): PreferenceStudy([runs/'acvae-gan', runs/'cvae-gan'], tmp_path/'x.csv', labels=['a', 'a'])


def test_record_appends_and_results(runs, faces_1k, tmp_path):
    s = PreferenceStudy([runs/'acvae-gan', runs/'cvae-gan'], tmp_path/'c.csv', n_trials=5, seed=3, data=faces_1k)
    sizes = []
    for t in range(5):
        s.record(t, s.trial(t)['shown'].index('acvae-gan'), rater='ada'); sizes.append((tmp_path/'c.csv').stat().st_size)
    assert sizes == sorted(sizes) and len(set(sizes)) == 5
    table, bad = s.results()
    assert bad == 0 and [(r['model'], r['chosen'], r['shown']) for r in table] == [('acvae-gan', 5, 5), ('cvae-gan', 0, 5)]
    assert s.done_by('ada') == set(range(5)) and s.done_by('bob') == set()
    with pytest.raises(UserError, match='no face 2'): s.record(0, 2)
    with pytest.raises(UserError, match='trials 0..4'): s.record(5, 0)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(clicks=st.lists(st.sampled_from(['A', 'B', 'skip', 'results', 'name', 'noname']), max_size=12))
def test_widget_any_click_order(runs, faces_1k, tmp_path_factory, clicks):
    path = tmp_path_factory.mktemp('w')/'c.csv'
    s = PreferenceStudy([runs/'acvae-gan', runs/'cvae-gan'], path, n_trials=3, seed=0, data=faces_1k)
    w = PreferenceWidget(s)
    for c in clicks:
        n0, name0 = len(w.messages), w.rater.value
        if c in 'AB': w.choose['AB'.index(c)].click()
        elif c == 'skip': w.skip_btn.click()
        elif c == 'results': w.results_btn.click()
        elif c == 'name': w.rater.value = 'ada'
        else: w.rater.value = ''
        renamed = c in ('name', 'noname')
        assert len(w.messages) == n0 + (w.rater.value != name0 if renamed else 1)   # one message per action
    assert w.errors == [] and not any(m.startswith('unexpected') for _, m in w.messages)
    rows, bad = read_rows(path)
    assert bad == 0 and len(rows) == len({(r['rater'], r['trial']) for r in rows}) <= 3   # each trial answered once per rater
