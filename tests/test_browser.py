"The face tool's Voila page in a real browser: headless Chromium (Debian's) driven by Playwright clicks through both stages."
import os, shutil, signal, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f'{CHROMIUM} is absent: install Debian chromium (apt-get install -y chromium) to run the browser test')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, faces_1k):
    "A 3-step acvae-gan run with its fine-tuning block already measured (so the page starts quickly)."
    import torch
    from crvae.training import train
    from crvae.tool import fine_tuning_block
    n = torch.get_num_threads(); torch.set_num_threads(1)      # steady on a shared 2-core machine (see 30_face_tool)
    try:
        run = tmp_path_factory.mktemp('browser')/'acvae'
        train('acvae-gan', run, steps=3, faces=faces_1k, sets=['batch_size=16'], progress=False, sample_every=0, ckpt_every=0)
        fine_tuning_block(run, data=faces_1k)
    finally: torch.set_num_threads(n)
    return run


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
def app_url(tiny_run, tmp_path_factory):
    "`crvae app RUN --no-browser` on a free 127.0.0.1 port; stopped (its whole process group) afterwards."
    from crvae.tool import free_port
    port, log = free_port(), tmp_path_factory.mktemp('app')/'app.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log, 'wb') as f:
        proc = subprocess.Popen([sys.executable, '-m', 'crvae', 'app', str(tiny_run), '--port', str(port), '--no-browser'],
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


def test_face_tool_in_chromium(app_url, tmp_path):
    "Tick an attribute, generate, pick a face by clicking its picture, get variations; the pictures change, no error shows."
    from playwright.sync_api import sync_playwright, expect
    url, log = app_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={'width': 1200, 'height': 1000})
            page.goto(url, wait_until='domcontentloaded', timeout=30_000)
            status = page.locator('.crvae-status')
            eyeglasses = page.locator('.crvae-attr-Eyeglasses')
            eyeglasses.wait_for(timeout=45_000)                          # the kernel has run the app cell
            expect(status).to_contain_text('tick attributes', timeout=10_000)
            grid = page.locator('.crvae-grid')
            blank = grid.screenshot()

            eyeglasses.click()
            expect(eyeglasses).to_contain_text('+ Eyeglasses')
            page.get_by_role('button', name='Generate').click()
            expect(status).to_contain_text('faces for +Eyeglasses', timeout=20_000)
            page.wait_for_timeout(300)                                 # let the new images paint
            faces = grid.screenshot()
            assert faces != blank, 'Generate did not change the grid'

            box = page.locator('.crvae-cell-4 img').bounding_box()      # click the picture itself, as a user does
            page.mouse.click(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)
            expect(status).to_contain_text('picked face 4', timeout=20_000)
            expect(page.locator('.crvae-cell-4')).to_have_class(__import__('re').compile('crvae-picked'))

            page.get_by_role('button', name='Variations').click()
            expect(status).to_contain_text('variations of the picked face', timeout=20_000)
            page.wait_for_timeout(300)
            varied = grid.screenshot()
            assert varied != faces, 'Variations did not change the grid'

            shot = page.screenshot(full_page=True)
            (tmp_path/'face_tool.png').write_bytes(shot)
            try: Path('/tmp/face_tool.png').write_bytes(shot)     # for a person to look at
            except OSError: pass
            text = page.inner_text('body')
            for bad in ('Traceback', 'unexpected error', 'There was an error', 'Error:'):
                assert bad not in text, f'{bad!r} on the page:\n{text[:2000]}'
            assert 'crvae-error' not in (status.get_attribute('class') or '')
        finally:
            browser.close()
