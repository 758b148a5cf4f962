"The long comparison's protocol (notebook 88b_protocol): the plan, the decision rule over seeds, the windowed score."
import pytest
import torch

from crvae.protocol import (PROTOCOL, Protocol, ROLES, GROUPS, plan, run_sets, paired_verdict, judge, window_steps,
                            lstm_rate_decision, pairwise_diversity, score_run)


@pytest.mark.parametrize('want,a,b,higher', [
    ('supported', [3.0, 3.2, 3.1], [2.0, 2.1, 2.3], True),
    ('the opposite holds', [2.0, 2.1, 2.3], [3.0, 3.2, 3.1], True),
    ('not shown at this budget', [3.0, 2.0, 3.1], [2.5, 2.5, 2.5], True),       # signs differ
    ('not shown at this budget', [2.1, 2.5, 2.02], [2.0, 2.0, 2.0], True),      # one sign, mean below 2 s.e.
    ('supported', [0.04, 0.05, 0.045], [0.05, 0.06, 0.052], False),             # a lower error is better
    ('the opposite holds', [0.05, 0.06, 0.052], [0.04, 0.05, 0.045], False),
    ('indicative: ahead', [3.0], [2.0], True), ('indicative: behind', [2.0], [3.0], True),
    ('indicative: tied', [2.0], [2.0], True), ('not run', [], [], True)])
def test_rule_outcomes(want, a, b, higher):
    assert paired_verdict(a, b, higher)['verdict'] == want


def test_rule_numbers():
    r = paired_verdict([3.0, 3.2, 3.1], [2.0, 2.1, 2.3])
    assert r['n'] == 3 and r['diffs'] == pytest.approx([1.0, 1.1, 0.8]) and r['mean'] == pytest.approx(0.9667, abs=1e-4)
    assert r['se'] == pytest.approx(0.0882, abs=1e-4)
    # the same differences but one seed's sign flipped: never supported, whatever the mean
    assert paired_verdict([3.0, 3.2, 2.0], [2.0, 2.1, 2.05])['verdict'] == 'not shown at this budget'
    # a stricter z turns a supported verdict into "not shown"
    assert paired_verdict([2.3, 2.5, 2.2], [2.0, 2.0, 2.0], z=2.0)['verdict'] == 'supported'
    assert paired_verdict([2.3, 2.5, 2.2], [2.0, 2.0, 2.0], z=5.0)['verdict'] == 'not shown at this budget'


def test_rule_needs_pairs():
    from crvae.core import UserError
    with pytest.raises(UserError, match='one score of each model per seed'): paired_verdict([1.0, 2.0], [1.0])


def test_plan():
    P = plan()
    names = [r['name'] for r in P]
    assert len(names) == len(set(names)) == 29
    for group, roles, seeds, steps in GROUPS:
        for role in roles:
            for s in seeds: assert f'{role}-seed{s}' in names
    for r in P:
        cr = r['model'] in ('crvae', 'crvae-gan', 'ccrvae-gan', 'acvae-gan')
        assert ('--set lstm_lr_factor=0.125' in r['command']) == cr, r['name']
        assert all(f'--set {s}' in r['command'] for s in PROTOCOL.common_sets)
        assert f"--seed {r['seed']} " in r['command'] and r['command'].startswith(f"crvae train {r['model']} ")
    assert names[:2] == ['crvae-gan-seed0', 'acvae-gan-seed0']          # the LSTM-rate check first
    assert run_sets('vae-gan-mi')[-2:] == ['mi=true', 'kappa=0.02'] and ROLES['crvae-gan-nomi'] == ('crvae-gan', ('kappa=0',))


def test_plan_cli(run_cli):
    code, out, err = run_cli('protocol', 'plan', '--commands')
    assert code == 0 and out.strip().splitlines() == [r['command'] for r in plan()]


def test_windows_and_check():
    assert window_steps(10_000) == [9250, 9500, 9750, 10_000]
    mk = lambda v, acc=0.8: [dict(step=s, IS=v, attr_acc=acc) for s in window_steps(2500)]
    arms = {'crvae-gan': {'lr': [mk(2.0), mk(2.2), mk(1.9)], 'lr/8': mk(1.8)},
            'acvae-gan': {'lr': [mk(3.0), mk(3.1), mk(2.9)], 'lr/8': mk(2.0, acc=0.9)}}
    assert not lstm_rate_decision(arms)['switch']                  # acvae-gan's accuracy is not below: lr/8 stays
    arms['acvae-gan']['lr/8'] = mk(2.0, acc=0.7)
    d = lstm_rate_decision(arms)
    assert d['switch'] and d['lstm_lr_factor'] == 1.0


def test_judge_pairs_seeds():
    fake = lambda role, seed, v: dict(role=role, seed=seed, budgets={'10000': dict(mean=dict(
        IS=v, FD=50 - v, recon_mse=None, attr_acc=None, diversity=0.1))})
    S = [fake('acvae-gan', s, 3.0 + s) for s in range(3)] + [fake('cvae-gan', s, 2.5 + s) for s in range(3)]
    rows = {r['claim']: r for r in judge(S, 10_000)}
    assert rows['is-acvae-cvae']['verdict'] == 'supported' and rows['is-acvae-cvae']['seeds'] == 3
    assert rows['is-acvae-cvae']['mean_diff'] == pytest.approx(0.5) and rows['is-acvae-cvae']['se'] == pytest.approx(0.0)
    assert rows['is-ccrvae-cvae']['verdict'] == 'not run'
    assert all(r['verdict'] == 'not run' for r in judge(S, 2500))     # no score at that budget


def test_diversity():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    assert pairwise_diversity(x[:1].expand(5, -1, -1, -1)) == 0.0
    assert pairwise_diversity(x) > 0.05


def test_score_run(tiny_run, tiny_classifiers, faces_1k):
    from crvae.classifiers import load_classifiers
    run = tiny_run('protocol-crvae-gan', 'crvae-gan', [], faces_1k, steps=4, snapshots=True)   # snapshots 2, 3, 4
    clf = load_classifiers(faces_1k, root=tiny_classifiers(faces_1k))
    p = Protocol(budgets=(2, 4), window=2, gap=1, n_test=20, diversity_n=8)
    res = score_run(run, 'crvae-gan', 0, p, faces=faces_1k, classifiers=clf)
    assert res['missing'] == {'2': [1]}                             # never scored from fewer snapshots than the window
    b = res['budgets']['4']
    assert [r['step'] for r in b['snapshots']] == [3, 4] and res['n_test'] == 20
    assert b['mean']['IS'] == pytest.approx(sum(r['IS'] for r in b['snapshots']) / 2)
    assert b['mean']['attr_acc'] is None and b['mean']['recon_mse'] > 0 and b['mean']['diversity'] > 0
    from crvae.core import UserError
    with pytest.raises(UserError, match='not the role'): score_run(run, 'vae-gan', 0, p, faces=faces_1k, classifiers=clf)


def test_block_profile(tiny_run, faces_1k):
    from crvae.protocol import block_profile, coarse_to_fine_verdict
    from crvae.runs import load
    m = load(tiny_run('protocol-crvae-gan', 'crvae-gan', [], faces_1k, steps=4, snapshots=True))
    p = block_profile(m, n=4)
    assert len(p['coarse_share']) == m.T and sum(p['change_share']) == pytest.approx(1.0, abs=1e-5)
    assert all(0 <= c <= 1 + 1e-6 for c in p['coarse_share'])
    assert p['early'] == pytest.approx(sum(p['coarse_share'][:m.T // 2]) / (m.T // 2))
    seeds = [dict(early=e, late=l) for e, l in ((0.6, 0.45), (0.62, 0.47), (0.58, 0.46))]
    assert coarse_to_fine_verdict(seeds)['verdict'] == 'supported'
    assert coarse_to_fine_verdict([dict(early=0.4, late=0.5)])['verdict'] == 'indicative: behind'


def test_protocol_report_section(tmp_path):
    from crvae.protocol import protocol_markdown, read_protocol, curve_difference
    assert 'Not started' in protocol_markdown(read_protocol(tmp_path/'none'))
    curves = {(r, s): [dict(step=st, IS=2 + (0.3 + 0.01 * s if r == 'acvae-gan' else 0), attr_acc=0.8, val_recon_mse=0.04,
                            FD_crvae=100) for st in (1750, 2000, 2250, 2500)] for r in ('acvae-gan', 'cvae-gan') for s in range(3)}
    d = curve_difference(curves, 'acvae-gan', 'cvae-gan', 'IS')
    assert list(d) == [1750, 2000, 2250, 2500] and d[2500] == pytest.approx([0.3, 0.31, 0.32])
    assert curve_difference(curves, 'acvae-gan', 'cvae-gan', 'FD', higher=False)[2500] == [0.0] * 3
    scores = [dict(role=r, seed=s, budgets={'2500': dict(mean=dict(IS=c[-1]['IS'], FD=100, recon_mse=0.04, attr_acc=0.8,
                                                                    diversity=0.1))}) for (r, s), c in curves.items()]
    man = [dict(run=f'{r}-seed{s}', status='scored' if s else 'running', steps_done='2500', steps='10000', code_commit='abc1234')
           for r, s in curves]
    md = protocol_markdown(dict(manifest=man, scores=scores, curves=curves), tmp_path)
    assert 'commit abc1234' in md and '4 of 6 runs scored' in md and 'acvae-gan-seed0 (2,500/10,000)' in md
    row = next(l for l in md.splitlines() if l.startswith('| is-acvae-cvae |'))
    assert '+0.31 ± 0.00577 (3 seeds): supported' in row and row.endswith('| not run |')
    assert (tmp_path/'protocol-budget-curves.png').stat().st_size > 5000


@pytest.mark.parametrize('want,atts', [
    ('supported, 2/3 seeds', [(0.3, 6), (0.4, 5), (0.9, 2)]),
    ('not supported, 2/2 seeds', [(0.3, 2), (0.7, 8)]),                   # sharp on too few steps; too spread
    ('too short to judge: the attention is still nearly uniform', [(0.97, 8), (0.99, 8), (0.3, 6)]),
    ('indicative (1 seed): sharp', [(0.3, 6)]), ('indicative (1 seed): not sharp', [(0.7, 8)]),
    ('too short to judge: the attention is still nearly uniform', [(0.96, 6)]), ('not run', [])])
def test_attention_rule(want, atts):
    from crvae.protocol import attention_verdict
    assert attention_verdict([dict(T=8, n_attrs=32, entropy_over_logT=h, steps_used=u, max_per_step=8) for h, u in atts]) == want


def test_weight_readings(tiny_run, faces_1k):
    "Readings at each budget's own step: the attention summary of acvae-gan, the block profile of an unconditional crVAE."
    from crvae.protocol import weight_readings, readings_rows, protocol_markdown
    from crvae.core import UserError
    p = Protocol(budgets=(2, 4), window=2, gap=1, n_test=20, diversity_n=8)
    acv = weight_readings(tiny_run('protocol-acvae-gan', 'acvae-gan', [], faces_1k, steps=4, snapshots=True), 'acvae-gan', 0, p)
    assert list(acv['budgets']) == ['2', '4'] and acv['budgets']['2']['step'] == 2   # the snapshots at the budgets' own steps
    a = acv['budgets']['4']['attention']
    assert a['T'] == 8 and 0 <= a['entropy_over_logT'] <= 1 and 'block_profile' not in acv['budgets']['4']
    cr = weight_readings(tiny_run('protocol-crvae-gan', 'crvae-gan', [], faces_1k, steps=4, snapshots=True), 'crvae-gan', 0, p)
    prof = cr['budgets']['4']['block_profile']
    assert 'attention' not in cr['budgets']['4'] and len(prof['coarse_share']) == 8 and 0 <= prof['early'] <= 1
    with pytest.raises(UserError, match='not the role'):
        weight_readings(tiny_run('protocol-crvae-gan', 'crvae-gan', [], faces_1k, steps=4, snapshots=True), 'acvae-gan', 0, p)
    rows = {r['model']: r for r in readings_rows([acv, cr], p)}
    assert rows['acvae-gan']['4 steps'].startswith('entropy/log T') and rows['acvae-gan-noreg']['2 steps'] == 'not run'
    assert '(1 seed): indicative' in rows['crvae-gan']['4 steps'] and rows['crvae']['4 steps'] == 'not run'
    man = [dict(run='acvae-gan-seed0', status='scored', steps_done='4', steps='4', code_commit='abc1234')]
    md = protocol_markdown(dict(manifest=man, scores=[], curves={}, readings=[acv, cr]), p=p)
    assert 'Read off the weights' in md and '| acVAE Table 1 with no regulariser | acvae-gan-noreg |' in md


def test_fig6_stability_reading(tiny_run, tiny_classifiers, faces_1k):
    "crVAE Fig. 6 under the protocol: the snapshots of the run's last steps, read at its final budget only, paired over seeds."
    from crvae.classifiers import load_classifiers
    from crvae.protocol import weight_readings, readings_rows
    clf = load_classifiers(faces_1k, root=tiny_classifiers(faces_1k))
    p = Protocol(steps=4, budgets=(2, 4), window=2, gap=1, n_test=20, diversity_n=8)
    run = tiny_run('protocol-crvae-gan', 'crvae-gan', [], faces_1k, steps=4, snapshots=True)     # snapshots 2, 3, 4
    r = weight_readings(run, 'crvae-gan', 0, p, classifiers=clf, fig6_steps=2)
    s = r['budgets']['4']['stability']
    assert s['steps'] == [3, 4] and len(s['pixel_change']) == 1 and 0 <= s['pixel_change_mean'] <= 1
    assert 'stability' not in r['budgets']['2']                                       # a reading at the run's last step only
    assert 'stability' not in weight_readings(run, 'crvae-gan', 0, p, classifiers=clf, fig6_steps=4)['budgets']['4']  # too few
    longer = Protocol(steps=8, budgets=(2, 4), window=2, gap=1)
    assert 'stability' not in weight_readings(run, 'crvae-gan', 0, longer, classifiers=clf, fig6_steps=2)['budgets']['4']  # unfinished
    nomi = dict(r, role='crvae-gan-nomi', budgets={'4': dict(stability=dict(s, pixel_change_mean=s['pixel_change_mean'] + 0.01))})
    row = next(x for x in readings_rows([r, nomi], p) if x['claim'].startswith('crVAE Fig. 6'))
    assert row['4 steps'].endswith('(1 seed): indicative: ahead') and row['2 steps'].startswith('not planned')
