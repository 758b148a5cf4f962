"""The face tool's Voila page in a real browser: headless Chromium (Debian's) driven by Playwright; the page opens on faces
with badges and the grid's time, then clicks through both stages. Screenshots go to $CRVAE_SCREENSHOTS (else tmp_path)."""
import os, re, shutil, signal, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f'{CHROMIUM} is absent: install Debian chromium (apt-get install -y chromium) '
                                       'to run the browser test')


SHIPPED = 'acvae-gan-avatars64'                                   # what `crvae app` opens without a run


@pytest.fixture(scope='module')
def shipped_run(faces_1k):
    """The shipped acvae-gan with its fine-tuning block measured as `crvae app` measures it (stored under $CRVAE_DATA/tool,
    reused by the app and by later test runs), so the page starts quickly."""
    import torch
    from crvae.runs import find_run
    from crvae.tool import fine_tuning_block
    n = torch.get_num_threads(); torch.set_num_threads(1)      # steady on a shared 2-core machine (see 30_face_tool)
    try: res = fine_tuning_block(SHIPPED, data=faces_1k)
    finally: torch.set_num_threads(n)
    assert res['classifier_note'].startswith('attribute classifier '), res['classifier_note']
    return find_run(SHIPPED)


def _wait_http(url, proc, log, timeout=45):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: pytest.fail(f'crvae app exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.3)
    pytest.fail(f'the Voila page at {url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}')


@pytest.fixture(scope='module')
def app_url(shipped_run, tmp_path_factory):
    "`crvae app --no-browser` (the shipped acvae-gan) on a free 127.0.0.1 port; stopped (its whole process group) afterwards."
    from crvae.app import free_port
    port, log = free_port(), tmp_path_factory.mktemp('app')/'app.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log, 'wb') as f:
        proc = subprocess.Popen([sys.executable, '-m', 'crvae', 'app', '--port', str(port), '--no-browser'],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        _wait_http(f'http://127.0.0.1:{port}/', proc, log)
        yield f'http://127.0.0.1:{port}/', log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)            # the group this test started: crvae app, Voila, the kernel
            try: proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL); proc.wait()


def test_voila_binds_loopback_only(app_url):
    "The server listens on 127.0.0.1, not on every interface."
    url, log = app_url
    assert 'http://127.0.0.1:' in log.read_text()
    port = int(url.rsplit(':', 1)[1].strip('/'))
    import socket
    for host in {socket.gethostbyname(socket.gethostname())} - {'127.0.0.1'}:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((host, port)) != 0, f'the app answers on {host}:{port}; it must bind 127.0.0.1 only'


# per picture: loaded, 64 px, and not the flat grey placeholder (the spread of its pixels, read back through a canvas)
_PICTURES_JS = """() => [...document.querySelectorAll('.crvae-cell img')].map(im => {
  if (!im.complete || im.naturalWidth === 0) return null;
  const c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(im, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; s += v; s2 += v * v; n++; }
  return {width: im.naturalWidth, std: Math.sqrt(Math.max(0, s2 / n - (s / n) ** 2))};
})"""


def _badges(page) -> list[list[tuple]]:
    "Per cell: (kind, attribute, text) of each badge."
    return page.evaluate("""() => [...document.querySelectorAll('.crvae-cell')].map(c =>
        [...c.querySelectorAll('.crvae-badge')].map(b => [b.dataset.ok, b.dataset.attr, b.textContent.trim()]))""")


def _screenshot_dir(tmp_path) -> Path:
    d = Path(os.environ.get('CRVAE_SCREENSHOTS') or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_face_tool_in_chromium(app_url, tmp_path):
    "The page opens on a drawn grid with badges and its time; then tick, generate, pick by clicking a picture, get variations."
    from playwright.sync_api import sync_playwright, expect
    url, log = app_url
    shots = _screenshot_dir(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={'width': 1200, 'height': 1100})
            asked = []                                                   # every URL the page requests: none may leave the machine
            page.on('request', lambda r: asked.append(r.url))
            page.goto(url, wait_until='domcontentloaded', timeout=30_000)
            status, timing = page.locator('.crvae-status'), page.locator('.crvae-timing')
            page.locator('.crvae-attr-Eyeglasses').wait_for(timeout=60_000)     # the kernel has run the app cell
            # the page opens on faces: the default attributes, seed 0, drawn with their badges and the grid's time
            expect(status).to_contain_text('9 faces for +Eyeglasses, +Smiling (seed 0)', timeout=10_000)
            expect(timing).to_have_text(re.compile(r'stage 1: 9 faces in \d+\.\d\d s'))
            expect(page.locator('.crvae-attr-Eyeglasses')).to_contain_text('+ Eyeglasses')
            header = page.inner_text("body")          # the shipped classifiers were found, as `crvae reproduce` finds them
            assert f'face tool: {SHIPPED}' in header and 'attribute classifier attributes-' in header, header[:1000]
            assert 'no attribute classifier' not in header
            assert 'sampler: fitted density of' in header and 'Refine' in header, header[:1000]   # the sampler line, the how-to
            page.wait_for_function("() => [...document.querySelectorAll('.crvae-cell img')].every(i => i.complete && i.naturalWidth > 0)",
                                   timeout=10_000)
            pics = page.evaluate(_PICTURES_JS)
            assert len(pics) == 9 and all(q['width'] == 64 and q['std'] > 10 for q in pics), pics      # faces, not placeholders
            opening = _badges(page)
            assert len(opening) == 9 and all([a for _, a, _ in row] == ['Eyeglasses', 'Smiling'] for row in opening), opening
            for row in opening:
                for kind, attr, text in row:
                    assert (kind, text) in (('ok', f'✓ {attr}'), ('miss', f'✗ {attr}')), row
            assert sum(k == 'ok' for row in opening for k, _, _ in row) >= 12, opening   # the shipped model mostly draws the request
            cell, badge = page.locator('.crvae-cell-0 img').bounding_box(), page.locator('.crvae-cell-0 .crvae-badge').first
            assert badge.is_visible() and badge.bounding_box()['y'] >= cell['y'] + cell['height'] - 4        # under the picture
            (shots/'face_tool_open.png').write_bytes(page.screenshot(full_page=True))
            grid = page.locator('.crvae-grid')
            first = grid.screenshot()

            hat = page.locator('.crvae-attr-Wearing_Hat')
            hat.click()
            expect(hat).to_contain_text('+ Wearing Hat')
            page.get_by_role('button', name='Generate').click()
            expect(status).to_contain_text('faces for +Eyeglasses, +Smiling, +Wearing_Hat', timeout=20_000)
            expect(page.locator('.crvae-cell-8 .crvae-badge')).to_have_count(3, timeout=5_000)
            page.wait_for_timeout(300)                                 # let the new images paint
            faces = grid.screenshot()
            assert faces != first, 'Generate did not change the grid'

            box = page.locator('.crvae-cell-4 img').bounding_box()      # click the picture itself, as a user does
            page.mouse.click(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
            expect(status).to_contain_text('picked face 4', timeout=20_000)
            expect(page.locator('.crvae-cell-4')).to_have_class(re.compile('crvae-picked'))

            page.get_by_role('button', name='Variations').click()
            expect(status).to_contain_text('variations of the picked face', timeout=20_000)
            expect(timing).to_have_text(re.compile(r'stage 2: 9 faces in \d+\.\d\d s'))
            page.wait_for_timeout(300)
            varied = grid.screenshot()
            assert varied != faces, 'Variations did not change the grid'
            for row in _badges(page):                                   # variations keep the request, and its badges (or 'broken')
                assert len(row) == 3 or row == [['broken', 'broken', 'broken']], row

            (shots/'face_tool.png').write_bytes(page.screenshot(full_page=True))
            print(f'screenshots: {shots/"face_tool_open.png"}, {shots/"face_tool.png"}')
            text = page.inner_text('body')
            for bad in ('Traceback', 'unexpected error', 'There was an error', 'Error:'):
                assert bad not in text, f'{bad!r} on the page:\n{text[:2000]}'
            assert 'crvae-error' not in (status.get_attribute('class') or '')

            page.locator('.crvae-sampler-menu select').select_option(label="paper's prior")   # the switch redraws the request
            expect(status).to_contain_text("sampler: paper's prior; 9 faces for +Eyeglasses", timeout=20_000)
            expect(page.locator('.crvae-sampler')).to_contain_text("sampler: the paper's prior")
            expect(timing).to_have_text(re.compile(r'stage 1: 9 faces in \d+\.\d\d s'))
            # under the paper's prior the broken-face score flags some faces: one grey badge each, no attribute ticks
            expect(page.locator('.crvae-badge-broken').first).to_be_visible(timeout=10_000)
            rows = _badges(page)
            broken = [row for row in rows if any(k == 'broken' for k, _, _ in row)]
            assert broken and all(row == [['broken', 'broken', 'broken']] for row in broken), rows
            assert page.locator('.crvae-badge-broken').first.evaluate("b => getComputedStyle(b).backgroundColor") == 'rgb(170, 183, 184)'
            (shots/'face_tool_prior.png').write_bytes(page.screenshot(full_page=True))
            page.locator('.crvae-sampler-menu select').select_option(label='fitted density')   # and back: no broken badge
            expect(status).to_contain_text('sampler: fitted density', timeout=20_000)
            page.wait_for_timeout(300)
            assert not any(k == 'broken' for row in _badges(page) for k, _, _ in row), _badges(page)
            # Undo back to a stage-1 grid: the timing line says stage 1 again
            for _ in range(3): page.get_by_role('button', name='Undo').click(); page.wait_for_timeout(400)
            expect(status).to_contain_text('undone: back to the faces', timeout=20_000)
            expect(timing).to_have_text(re.compile(r'stage 1: 9 faces in \d+\.\d\d s'))
            outside = [u for u in asked if not u.startswith(('http://127.0.0.1:', 'data:', 'blob:', 'ws://127.0.0.1:'))]
            assert not outside, f'the page asked the network for {outside[:5]}'
        finally:
            browser.close()


def test_preference_widget_in_chromium(tmp_path, faces_1k):
    "31_preference's study widget served as `crvae app` serves the tool: three shipped models' faces, a choice recorded."
    from playwright.sync_api import sync_playwright, expect
    from crvae.app import voila_command, free_port
    import json
    folder = tmp_path/'study'; folder.mkdir()
    src = ("from crvae.preference import PreferenceStudy, PreferenceWidget\n"
           "study = PreferenceStudy(['cvae-gan-avatars64', 'ccrvae-gan-avatars64', 'acvae-gan-avatars64'], "
           "'choices.csv', n_trials=4)\nPreferenceWidget(study, rater='test')")
    nb = dict(cells=[dict(cell_type='code', execution_count=None, id='study', metadata={}, outputs=[], source=src)],
              metadata=dict(kernelspec=dict(display_name='Python 3', language='python', name='python3')), nbformat=4, nbformat_minor=5)
    (folder/'study.ipynb').write_text(json.dumps(nb))
    port, log = free_port(), tmp_path/'voila.log'
    with open(log, 'wb') as f:
        proc = subprocess.Popen(voila_command(folder/'study.ipynb', port, False), stdout=f, stderr=subprocess.STDOUT, cwd=folder,
                                stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED='1'), start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}/'
        _wait_http(url, proc, log, timeout=90)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={'width': 900, 'height': 700})
                page.goto(url, wait_until='domcontentloaded', timeout=30_000)
                page.get_by_text('Which face looks most real?').wait_for(timeout=90_000)
                page.wait_for_function("() => { const ims = [...document.querySelectorAll('.crvae-cell img')];"
                                       " return ims.length == 3 && ims.every(i => i.complete && i.naturalWidth > 0); }", timeout=30_000)
                pics = page.evaluate(_PICTURES_JS)
                assert len(pics) == 3 and all(q['std'] > 10 for q in pics), pics                   # faces, not placeholders
                (_screenshot_dir(tmp_path)/'preference.png').write_bytes(page.screenshot(full_page=True))
                page.get_by_role('button', name='B looks most real').click()
                expect(page.locator('.crvae-status')).to_contain_text('recorded trial 1', timeout=20_000)
                page.wait_for_timeout(500)
                assert (folder/'choices.csv').exists() and len((folder/'choices.csv').read_text().splitlines()) == 2
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(15)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
