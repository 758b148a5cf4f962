"The 2-stage face tool: stage-2 variations touch only the fine-tuning block, undo, any click order, the stored block, badges."
import hashlib, json, math, re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import crvae.core
from crvae.data import to_float
from crvae.core import UserError, main
from crvae.core import assets_home, checkpoints_home
from helpers.write_hook import before_replace
from crvae.tool import (BLOCK_FILE, BlockSearch, FaceTool, fine_tuning_block, measure_blocks, redraw_block, choose_block, badge_html,
                        blank_png, _resolve_classifier)
from crvae.app import FaceToolUI, app_notebook, voila_command, APP_SOURCE
from crvae.training import train
from crvae.runs import load, find_run, read_run

QUICK = dict(search=BlockSearch(n_faces=8), classifier=None)


pytestmark = pytest.mark.usefixtures('one_thread')


def _train(root, name, faces, steps=3):
    run = Path(root)/name
    train(name, run, steps=steps, faces=faces, sets=['batch_size=16'], progress=False, sample_every=0, ckpt_every=0)
    return run


@pytest.fixture(scope='module')
def acvae_run(tmp_path_factory, faces_1k):
    return _train(tmp_path_factory.mktemp('tool'), 'acvae-gan', faces_1k)


@pytest.fixture(scope='module')
def tool(acvae_run, faces_1k):
    fine_tuning_block(acvae_run, data=faces_1k, **QUICK)
    return FaceTool(acvae_run, n=4, **QUICK)


def _unchanged_blocks(tool):
    "Per block: is it identical, in every variation, to the face being varied?"
    zb, zv = tool.model.blocks(tool.state.base['z']), tool.model.blocks(tool.state.z)     # (1, T, D), (n, T, D)
    return (zv == zb).all(-1).all(0).tolist()


@pytest.mark.parametrize('block', [None, 0, 3, 7])
def test_variations_change_only_the_block(tool, block):
    tool.history.clear(); tool.set_block(block)
    tool.generate({'Eyeglasses': 1}, seed=3)
    tool.pick(1)
    tool.variations(n=5, seed=11)
    t = tool.block
    assert t == (tool.block_info['block'] if block is None else block)
    assert _unchanged_blocks(tool) == [b != t for b in range(tool.model.T)]
    assert not torch.equal(tool.state.z, tool.state.base['z'].expand_as(tool.state.z))    # the chosen block did change
    assert torch.equal(tool.state.a, tool.state.base['a'].expand(5, -1))
    assert tool.state.images.shape == (5, 3, 64, 64) and tool.state.images.dtype == torch.uint8
    tool.variations(n=3, seed=12)                                      # again: the same face is varied
    assert _unchanged_blocks(tool) == [b != t for b in range(tool.model.T)]
    tool.set_block(None)


def test_seeded_and_attributes_kept(tool):
    tool.history.clear()
    a = tool.generate('Eyeglasses,-Smiling', seed=5).clone()
    b = tool.generate({'Eyeglasses': True, 'Smiling': False}, seed=5)
    assert torch.equal(a, b)
    names = tool.attr_names
    assert (tool.state.a[:, names.index('Eyeglasses')] == 1).all() and (tool.state.a[:, names.index('Smiling')] == -1).all()
    assert not torch.equal(a, tool.generate({'Eyeglasses': 1}, seed=6))


def test_undo_walks_back(tool):
    tool.history.clear()
    g1 = tool.generate(None, seed=1).clone()
    tool.pick(2)
    v = tool.variations(seed=0).clone()
    tool.pick(0)
    assert [s.stage for s in tool.history] == ['faces', 'faces', 'variations', 'variations']
    assert tool.undo().picked is None and torch.equal(tool.state.images, v)
    assert tool.undo().picked == 2
    assert tool.undo().picked is None and torch.equal(tool.state.images, g1)
    assert tool.undo() is None
    with pytest.raises(UserError, match='nothing to undo'): tool.undo()


def test_messages_not_tracebacks(tool, acvae_run):
    fresh = FaceTool()
    for f, msg in [(fresh.generate, 'load a run first'), (fresh.variations, 'load a run first'), (fresh.undo, 'load a run first'),
                   (lambda: fresh.pick(0), 'load a run first'), (lambda: fresh.load(''), 'give a run folder'),
                   (lambda: fresh.load(acvae_run/'nope'), 'is not a crvae run')]:
        with pytest.raises(UserError, match=msg): f()
    tool.history.clear()
    with pytest.raises(UserError, match='generate faces first'): tool.pick(0)
    with pytest.raises(UserError, match='pick a face first'): tool.variations()
    tool.generate()
    with pytest.raises(UserError, match='pick a face first'): tool.variations()
    with pytest.raises(UserError, match='pick one of 0..3'): tool.pick(4)
    with pytest.raises(UserError, match='did you mean Eyeglasses'): tool.generate({'Eyeglases': 1})
    with pytest.raises(UserError, match='blocks 0..7'): tool.set_block(8)
    with pytest.raises(UserError, match='ask for 1 to 256'): tool.generate(n=0)


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just('generate'), st.integers(0, 3)),
    st.tuples(st.just('pick'), st.integers(-1, 5)),
    st.tuples(st.just('variations'), st.integers(0, 3)),
    st.tuples(st.just('undo'), st.just(0)),
    st.tuples(st.just('block'), st.sampled_from([None, 0, 5, 9])),
    st.tuples(st.just('toggle'), st.sampled_from(['Eyeglasses', 'Smiling', 'Bald'])),
    st.tuples(st.just('load'), st.sampled_from(['good', 'bad'])),
), max_size=10)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_any_tool_sequence_raises_only_user_errors(tool, actions):
    "Random sequences of the tool's actions: only UserErrors, and every variations grid keeps the other blocks."
    tool.history.clear(); tool.set_block(None)
    for what, arg in actions:
        try:
            if what == 'generate': tool.generate({'Bald': 1} if arg % 2 else None, seed=arg)
            elif what == 'pick': tool.pick(arg)
            elif what == 'variations': tool.variations(seed=arg)
            elif what == 'undo': tool.undo()
            elif what == 'block': tool.set_block(arg)
        except UserError: pass
        s = tool.state
        if s is not None and s.stage == 'variations':
            assert _unchanged_blocks(tool) == [b != s.block for b in range(tool.model.T)]


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS, load_first=st.booleans())
def test_any_click_order_in_the_ui(tool, acvae_run, actions, load_first):
    "Random click sequences on the widgets, before or after loading: a message each time, never an exception."
    ui = FaceToolUI(FaceTool(n=4, **QUICK), run=str(acvae_run) if load_first else '', n=4)
    if load_first: ui.load_btn.click()
    for what, arg in actions:
        n0 = len(ui.messages)
        if what == 'generate': ui.seed.value = arg; ui.gen_btn.click()
        elif what == 'pick': ui.picks[arg % 4].click()
        elif what == 'variations': ui.var_btn.click()
        elif what == 'undo': ui.undo_btn.click()
        elif what == 'block': ui.block_box.value = -1 if arg is None else min(arg, 7) if ui.tool.loaded else -1
        elif what == 'toggle':
            if ui.tool.loaded: ui.attr_buttons[arg].click()
        elif what == 'load':
            ui.run_box.value = str(acvae_run) if arg == 'good' else str(acvae_run/'missing'); ui.load_btn.click()
        if what not in ('block', 'toggle'): assert len(ui.messages) == n0 + 1, (what, ui.messages[-3:])
    assert ui.errors == [], ui.errors
    assert not any(m.startswith('unexpected error') for _, m in ui.messages)


def test_block_file_written_atomically_and_reused(tmp_path, faces_1k, monkeypatch):
    run = _train(tmp_path, 'acvae-gan', faces_1k, steps=1)
    r1 = fine_tuning_block(run, data=faces_1k, **QUICK)
    stored = json.loads((run/BLOCK_FILE).read_text())
    assert r1['reused'] is False and stored['block'] == r1['block'] and len(stored['blocks']) == 8
    assert stored['key']['settings'] == dict(n_faces=8, seed=0, tol=0.02, min_visible=0.1, min_change=0.05, min_parts=1.0) and stored['key']['classifier'] is None
    assert 'pixel change only' in stored['classifier_note'] and stored['prevalence']['Eyeglasses'] > 0
    assert fine_tuning_block(run, **QUICK)['reused'] is True                 # no data needed to reuse
    # a crash just before the rename leaves the old file whole and no temporary behind
    before = (run/BLOCK_FILE).read_bytes()
    def boom(tmp): raise OSError(28, 'No space left on device')
    with before_replace(boom), pytest.raises(UserError): fine_tuning_block(run, data=faces_1k, recompute=True, **QUICK)
    assert (run/BLOCK_FILE).read_bytes() == before and not list(run.glob('.*.tmp'))
    # new settings or new weights measure again
    assert fine_tuning_block(run, data=faces_1k, search=BlockSearch(n_faces=4), classifier=None)['reused'] is False
    w = run/'model.safetensors'; w.write_bytes(w.read_bytes()[:-1] + bytes([w.read_bytes()[-1] ^ 1]))
    assert fine_tuning_block(run, data=faces_1k, **QUICK)['reused'] is False


def test_block_override_and_readonly_run(tmp_path, faces_1k, monkeypatch):
    run = _train(tmp_path, 'acvae-gan', faces_1k, steps=1)
    t = FaceTool(run, block=2, data=faces_1k, **QUICK)
    assert t.block == 2 and t.override == 2
    t.set_block(None); assert t.block == t.block_info['block']
    # a run folder that cannot be written: the result goes under data_home()/tool
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    import crvae.finetune                                  # the block search lives in notebook 29's module
    real = crvae.finetune.save_json
    def save(p, obj):
        if Path(p).parent == run: raise UserError(f'cannot write {p}: the folder is not writable')
        return real(p, obj)
    monkeypatch.setattr(crvae.finetune, 'save_json', save)
    r = fine_tuning_block(run, data=faces_1k, search=BlockSearch(n_faces=4), classifier=None)
    assert Path(r['path']).parent == tmp_path/'home'/'tool'
    assert fine_tuning_block(run, search=BlockSearch(n_faces=4), classifier=None)['reused'] is True


@pytest.mark.parametrize('name', ['crvae-gan', 'vae'])
def test_unconditional_and_fc_models(tmp_path, faces_1k, name):
    "Unconditional models use N(0, I); FC models' T slices work but carry a warning."
    run = _train(tmp_path, name, faces_1k, steps=1)
    t = FaceTool(run, n=3, **QUICK)
    assert t.attr_names == [] and t.block_info['prevalence'] == {}
    assert ('arbitrary groups' in t.block_info['family_note']) == (name == 'vae')
    t.generate(); t.pick(0); t.variations()
    assert _unchanged_blocks(t) == [b != t.block for b in range(t.model.T)]
    with pytest.raises(UserError, match='unconditional'): t.generate({'Smiling': 1})


def test_measure_blocks_with_a_classifier(tool):
    "A classifier that reads the requested attributes back keeps every block; one that ignores them keeps none."
    m = tool.model
    rows = torch.where(torch.rand(8, 32, generator=torch.Generator().manual_seed(0)) < 0.5, 1.0, -1.0)
    perfect = measure_blocks(m, rows, classifier=lambda y: rows, search=BlockSearch(n_faces=8))
    assert perfect['base_score'] == 1.0 and all(r['keeps_attributes'] for r in perfect['blocks'])
    noisy = lambda y: y.mean((1, 2, 3), keepdim=False)[:, None].expand(-1, 32) - y.mean()   # depends on the picture
    res = measure_blocks(m, rows, classifier=noisy, search=BlockSearch(n_faces=8))
    assert res['block'] in range(8) and [r['block'] for r in res['blocks']] == list(range(8))          # the prior: one row a block
    assert 0 <= res['base_score'] <= 1 and all(0 <= r['attr_score'] <= 1 for r in res['blocks'])
    assert sorted(a for r in res['blocks'] for a in r['attends']) == sorted(m.run['data']['attr_names'])   # acVAE Table 1


def test_resample_block_keeps_the_rest(tool):
    m = tool.model
    a = torch.ones(3, 32); g = torch.Generator().manual_seed(0)
    z = m.sample_z(a, 3, g); z0 = z.clone()
    for t in range(m.T):
        z2 = redraw_block(m, z, a, t, g)
        assert torch.equal(z, z0)                                               # the input is not modified
        assert (m.blocks(z2) != m.blocks(z)).any(-1).any(0).tolist() == [b == t for b in range(m.T)]


def test_choose_block_rules():
    rows = [dict(block=0, pixel_change=0.001, attr_score=0.9), dict(block=1, pixel_change=0.02, attr_score=0.9),
            dict(block=2, pixel_change=0.01, attr_score=0.5)]
    assert choose_block(rows, 0.08, 0.9, 0.02, 0.1) == (1, 'smallest visible change that keeps the attributes')
    assert choose_block(rows, 0.08, None, 0.02, 0.1)[0] == 2
    assert choose_block(rows, 1.0, 0.9, 0.02, 0.1)[0] == 1                       # nothing visible: the largest that keeps
    assert choose_block(rows, 0.08, 0.99, 0.02, 0.1)[0] == 0                     # nothing keeps: best score
    # issue 27's floors: at least 5 % mean pixel change and one part family per face
    rows = [dict(block=0, pixel_change=0.03, parts_changed=2.0, attr_score=0.9), dict(block=1, pixel_change=0.12, parts_changed=6.0,
            attr_score=0.9), dict(block=2, pixel_change=0.06, parts_changed=0.5, attr_score=0.9)]
    assert choose_block(rows, 0.2, 0.9, 0.02, 0.1, 0.05, 1.0) == (1, 'smallest visible change that keeps the attributes')
    block, rule = choose_block(rows, 0.2, 0.9, 0.02, 0.1, 0.5, 1.0)              # none qualifies: the page says so and why
    assert block == 1 and rule.startswith('no block passed the visibility floor (at least 50 % mean pixel change and 1 part family')


def test_broken_badge_replaces_the_ticks(tool):
    "A face the broken-face score flags gets one grey 'broken' badge instead of the attribute ticks."
    L = torch.full((4, 32), -8.0); L[1] = 0.1; L[3] = -0.2                    # faces 1 and 3: the classifier doubts everything
    tool.history.clear()
    tool.classifier, tool.broken_threshold = _fake_classifier(L), -5.0
    try:
        tool.generate({'Eyeglasses': 1}, seed=0)
        assert tool.state.broken.tolist() == [False, True, False, True]
        b = tool.badges()
        assert [row[0]['name'] for row in b] == ['Eyeglasses', 'broken', 'Eyeglasses', 'broken'] and b[1][0]['broken']
        html = badge_html(b[1])
        assert 'crvae-badge-broken' in html and 'data-ok="broken"' in html and '✓' not in html
        tool.generate(None, seed=0)                                                  # nothing requested: still flagged
        assert [len(r) for r in tool.badges()] == [0, 1, 0, 1] and tool.state.logits is None
    finally:
        tool.classifier, tool.broken_threshold = None, None; tool.history.clear()


def test_app_command_checks_and_loopback(acvae_run, run_cli, monkeypatch):
    code, out, err = run_cli('app', acvae_run/'nope', '--no-browser')
    assert code == 2 and 'is not a crvae run' in err
    code, out, err = run_cli('app', acvae_run, '--block', '9', '--no-browser')
    assert code == 2 and '--block 9' in err
    code, out, err = run_cli('app', acvae_run, '--port', '70000', '--no-browser')
    assert code == 2 and '--port' in err
    cmd = voila_command('x.ipynb', 1234)
    assert '--Voila.ip=127.0.0.1' in cmd and '--no-browser' in cmd and '--Voila.port_retries=0' in cmd
    nb = app_notebook()
    assert nb['cells'][0]['source'] == APP_SOURCE and nb['nbformat'] == 4


# ---- badges: does the attribute classifier see each requested attribute?

def _fake_classifier(logits):
    "A classifier answering fixed attribute logits (n, 32) (repeated for more faces), whatever the pictures."
    def fake(y):
        assert y.dtype == torch.float32 and y.min() >= -1 and y.max() <= 1 and y.shape[1:] == (3, 64, 64)
        return logits[torch.arange(len(y)) % len(logits)]
    fake.version = 'fake-1'
    return fake


def test_badges_are_what_the_classifier_sees(tool):
    names = tool.attr_names
    ie, ism = names.index('Eyeglasses'), names.index('Smiling')
    L = torch.full((4, 32), -3.0)
    L[:, ie] = torch.tensor([2.0, -1.0, 3.0, -2.0])                   # sees glasses on faces 0 and 2
    L[:, ism] = torch.tensor([-1.0, -4.0, 4.0, 0.5])                  # sees a smile on faces 2 and 3
    tool.history.clear()
    tool.classifier = _fake_classifier(L)
    try:
        tool.generate({'Smiling': -1, 'Eyeglasses': 1}, seed=2)
        b = tool.badges()
        assert [[x['name'] for x in row] for row in b] == [['Eyeglasses', 'Smiling']] * 4    # the model's attribute order
        assert [row[0]['ok'] for row in b] == [True, False, True, False]                    # glasses wanted
        assert [row[1]['ok'] for row in b] == [True, True, False, False]                    # no smile wanted
        assert [row[1]['present'] for row in b] == [False, False, True, True] and not b[0][1]['wanted']
        assert b[0][0]['p'] == round(1 / (1 + math.exp(-2.0)), 3)
        tool.pick(3); tool.variations(n=4, seed=1)                                           # variations keep the request
        assert tool.state.requested == {'Eyeglasses': 1.0, 'Smiling': -1.0}
        # 12 candidates drawn (3 x 4), read as rows 0,1,2,3,0,1,...: only row 0 keeps both; shown: its 3, then the first other
        assert (tool.state.drawn, tool.state.kept) == (12, 3)
        assert [row[0]['ok'] for row in tool.badges()] == [True, True, True, False]
        assert tool.candidates_line() == '3 of 12 candidates kept your attributes; 4 shown (1 of them do not keep them)'
        z12 = tool.state.z
        tool.undo(); tool.candidates = 1; tool.variations(n=4, seed=1)                        # as drawn: no filtering
        assert tool.state.drawn is None and tool.candidates_line() == ''
        assert [row[0]['ok'] for row in tool.badges()] == [True, False, True, False]
        assert _unchanged_blocks(tool) == [b != tool.block for b in range(tool.model.T)]
        tool.candidates = 3
        tool.undo(); tool.undo()
        assert [row[1]['ok'] for row in tool.badges()] == [True, True, False, False]
        tool.generate(None, seed=2)                                                          # nothing requested: no badges
        assert tool.badges() == [[]] * 4 and tool.state.logits is None
        tool.classifier = lambda y: L[:1, :5]                                                # a wrong answer is a clear error
        with pytest.raises(UserError, match='logits'): tool.generate({'Eyeglasses': 1})
    finally:
        tool.classifier = None; tool.history.clear()
    tool.generate({'Eyeglasses': 1})                                                         # no classifier: unknown
    assert [row[0]['ok'] for row in tool.badges()] == [None] * 4
    tool.history.clear()


def test_badge_html():
    row = [dict(name='Eyeglasses', wanted=True, present=True, p=0.97, ok=True),
           dict(name='Mouth_Slightly_Open', wanted=False, present=True, p=0.8, ok=False),
           dict(name='Bald', wanted=True, present=None, p=None, ok=None)]
    h = badge_html(row)
    spans = re.findall(r'<span class="crvae-badge crvae-badge-(\w+)" data-attr="(\w+)"[^>]*title="([^"]*)">([^<]*)</span>', h)
    assert [(k, a, t) for k, a, _, t in spans] == [('ok', 'Eyeglasses', '✓ Eyeglasses'),
                                                  ('miss', 'Mouth_Slightly_Open', '✗ no Mouth Slightly Open'),
                                                  ('unknown', 'Bald', '? Bald')]
    assert 'sees it (p = 0.97)' in spans[0][2] and 'not wanted' in spans[1][2] and 'no classifier' in spans[2][2]
    assert badge_html([]) == '<div class="crvae-badges"></div>'


def test_ui_opens_on_a_grid_with_badges_and_time(acvae_run):
    "Loading draws the first grid at once: the default attributes ticked, seed 0, badges under every face, the time shown."
    L = torch.zeros(4, 32); L[:, 8] = torch.tensor([1.0, -1.0, 1.0, 1.0])                  # Eyeglasses seen on faces 0, 2, 3
    kw = dict(search=BlockSearch(n_faces=8), classifier=_fake_classifier(L))
    ui = FaceToolUI(FaceTool(acvae_run, n=4, **kw), n=4)
    st = ui.tool.state
    assert st is not None and st.stage == 'faces' and st.seed == 0 and st.requested == {'Eyeglasses': 1.0, 'Smiling': 1.0}
    assert ui.errors == [] and 'faces for +Eyeglasses, +Smiling (seed 0)' in ui.messages[-1][1]
    assert all(im.value != blank_png() for im in ui.imgs)
    assert ui.attr_buttons['Eyeglasses'].description == '+ Eyeglasses' and ui.seed.value == 0
    kinds = [re.findall(r'crvae-badge-(\w+)" data-attr="(\w+)"', r.value) for r in ui.badge_rows]
    assert kinds == [[('ok', 'Eyeglasses'), ('miss', 'Smiling')], [('miss', 'Eyeglasses'), ('miss', 'Smiling')],
                     [('ok', 'Eyeglasses'), ('miss', 'Smiling')], [('ok', 'Eyeglasses'), ('miss', 'Smiling')]]
    assert re.search(r'stage 1: <b>4 faces in \d+\.\d\d s</b>', ui.timing.value) and ui.grid_seconds[:2] == ('stage 1', 4)
    ui.picks[1].click(); ui.var_btn.click()
    assert 'stage 2: <b>4 faces in' in ui.timing.value and all(r.value.count('class="crvae-badge ') == 2 for r in ui.badge_rows)
    # loading through the run box does the same; no default attributes: a grid without badges
    ui2 = FaceToolUI(FaceTool(n=4, **kw), run=str(acvae_run), n=4, attrs={})
    ui2.load_btn.click()
    assert ui2.tool.state.requested == {} and [r.value for r in ui2.badge_rows] == [''] * 4 and '4 faces in' in ui2.timing.value
    assert ui2.messages[-1][1].startswith('loaded acvae-gan from ') and ui2.errors == []


def test_shipped_checkpoint_uses_the_shipped_classifiers(tmp_path, monkeypatch, faces_1k):
    "As `crvae reproduce`: a shipped checkpoint finds the shipped classifiers without any trained by the user; its folder stays as shipped."
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))                   # an empty cache: only the shipped classifiers exist
    run = find_run('acvae-gan-avatars64')
    card = json.loads((assets_home()/'classifiers'/'avatars64'/'attributes.json').read_text())
    clf, version, note = _resolve_classifier('auto', read_run(run))
    assert callable(clf) and version == card['classifier_version'] and note == f'attribute classifier {version}'
    before = {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in run.iterdir()}
    tool = FaceTool('acvae-gan-avatars64', n=6, search=BlockSearch(n_faces=4), data=faces_1k)
    assert tool.classifier is not None and tool.block_info['classifier_note'] == note == tool.classifier_note
    assert Path(tool.block_info['path']).parent == tmp_path/'home'/'tool' and run.parent == checkpoints_home()
    other = fine_tuning_block(run, search=BlockSearch(n_faces=2), data=faces_1k)         # other settings: a file of their own
    assert other['reused'] is False and other['path'] != tool.block_info['path']
    assert fine_tuning_block(run, search=BlockSearch(n_faces=4))['reused'] is True
    assert {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in run.iterdir()} == before
    tool.generate({'Eyeglasses': 1, 'Smiling': -1}, seed=0)
    b = tool.badges()
    assert all([x['name'] for x in row] == ['Eyeglasses', 'Smiling'] and all(x['ok'] in (True, False) for x in row) for row in b)
    assert sum(x['ok'] for row in b for x in row) >= 7, b      # more than half of 12: the shipped model (84% attribute accuracy) mostly draws what was asked


@pytest.mark.parametrize('data', [dict(data='avatars', attr_names=['Smiling', 'Eyeglasses']),
                                  dict(data='celeba', attr_names=['Smiling'])])
def test_no_classifier_fits_says_why(tmp_path, monkeypatch, data):
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    clf, version, note = _resolve_classifier('auto', dict(data=data))
    assert clf is None and version is None
    assert note.startswith(f"no attribute classifier fits this run (no evaluation classifiers for {data['data']} under ")
    assert '`crvae classifiers --data ' in note and note.endswith('pixel change only, no badges')


def test_run_label_hides_the_machine_path_of_a_shipped_checkpoint(tmp_path):
    from crvae.core import checkpoints_home
    from crvae.app import run_label
    assert run_label(checkpoints_home()/'acvae-gan-avatars64') == 'acvae-gan-avatars64'
    assert run_label(tmp_path/'my-run') == str(tmp_path/'my-run') and run_label('runs/x') == 'runs/x' and run_label('') == ''


@pytest.mark.parametrize('name', ['acvae-gan-avatars64', 'vae-gan-avatars64'])
def test_shipped_checkpoints_sample_their_fitted_density(tmp_path, monkeypatch, faces_1k, name):
    "A shipped checkpoint opens on its fitted code density (notebook 16); stage 2 redraws one block from that density's "
    "conditional; the paper's prior is one switch away. Asserted on the codes, not the pictures."
    monkeypatch.setenv('CRVAE_DATA', str(tmp_path/'home'))
    tool = FaceTool(name, n=64, search=BlockSearch(n_faces=2), classifier=None, data=faces_1k)
    assert tool.sampler == 'fitted' and 'fitted density' in tool.sampler_line()
    tool.generate(seed=0)
    d, st = tool.density, tool.state
    off = (st.z.reshape(64, -1) - d.loc(st.a, 64)).mean(0)                  # the codes' mean offset from W^T a + b (or b)
    assert bool((off.abs() < 5 * (d.S.diagonal() / 64).sqrt()).all()) and st.sampler == 'fitted'
    tool.pick(3); tool.variations(n=5, seed=1)
    assert _unchanged_blocks(tool) == [b != tool.block for b in range(tool.model.T)] and tool.state.sampler == 'fitted'
    tool.set_sampler('prior'); tool.generate(seed=0)
    assert tool.state.sampler == 'prior' and not torch.equal(tool.state.z, st.z)


def test_prior_fit_command_errors(run_cli):
    code, _, err = run_cli('prior-fit', 'nowhere')
    assert code == 2 and 'nowhere is not a crvae run' in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli('prior-fit', '--n', '1')
    assert code == 2 and '--n must be an integer from 2' in err


def test_block_key_hashes_the_weights_load_reads(acvae_run, tmp_path, faces_1k):
    "No model.safetensors and a damaged checkpoints/latest: `runs.weights_path` falls back to the newest complete checkpoint,"
    " for `load` and for the block file's key alike."
    import shutil
    from crvae.runs import weights_path, sha256_file
    run = tmp_path/'run'
    shutil.copytree(acvae_run, run)
    for f in run.glob(BLOCK_FILE): f.unlink()
    shutil.rmtree(run/'checkpoints', ignore_errors=True)                       # the run's own; two made here
    for step in (1, 2):
        ck = run/'checkpoints'/f'step-{step:07d}'; ck.mkdir(parents=True)
        shutil.copy(run/'model.safetensors', ck/'model.safetensors'); (ck/'state.pt').write_bytes(b'')
    (run/'checkpoints'/'step-0000001'/'model.safetensors').write_bytes(b'not read')   # an older checkpoint: must not be picked
    (run/'model.safetensors').unlink()
    (run/'checkpoints'/'latest').write_bytes(b'\xff\xfe damaged')
    assert weights_path(run) == run/'checkpoints'/'step-0000002'/'model.safetensors'
    assert weights_path(run, 1) == run/'checkpoints'/'step-0000001'/'model.safetensors'
    r = fine_tuning_block(run, data=faces_1k, **QUICK)
    assert r['key']['weights_sha256'] == sha256_file(run/'checkpoints'/'step-0000002'/'model.safetensors')
    shutil.rmtree(run/'checkpoints')
    with pytest.raises(UserError, match='has no weights yet'): weights_path(run)


def test_variations_show_visible_changes_first(tool, monkeypatch):
    "Among the candidates that keep the request, those that change the face by at least the visible floor (5 %) come first."
    names = tool.attr_names
    L = torch.full((1, len(names)), -3.0)
    L[:, names.index('Eyeglasses')] = 3.0                                  # every face keeps the request
    tool.history.clear()
    tool.classifier = _fake_classifier(L)
    try:
        tool.generate({'Eyeglasses': 1}, seed=2); tool.pick(0)
        base = tool.state.face(0)['image']
        step = torch.tensor([0, 60, 0, 0, 60, 60, 0, 60, 60, 0, 0, 0])     # the 12 candidates: 1, 4, 5, 7 and 8 change visibly
        monkeypatch.setattr(crvae.tool, '_images', lambda self, z, a: (base[None].int() - step[:len(z), None, None, None]).clamp(0, 255).to(torch.uint8))
        change = lambda x: float((to_float(x) - to_float(base)).abs().mean() / 2)
        assert tool._min_change == 0.05 and change((base.int() - 60).clamp(0, 255).to(torch.uint8)) > 0.05
        tool.variations(n=4, seed=1)                                        # 3 x 4 = 12 drawn, 4 shown
        assert (tool.state.drawn, tool.state.kept) == (12, 12)
        assert all(change(x) > 0.05 for x in tool.state.images)             # the visible ones (before: the first four drawn)
        tool.undo(); tool.candidates = 1; tool.variations(n=4, seed=1)     # as drawn: no choice
        assert [change(x) > 0.05 for x in tool.state.images] == [False, True, False, False]
    finally:
        tool.classifier, tool.candidates = None, 3
        tool.history.clear()
