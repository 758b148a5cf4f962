"""The face app's server under faults: `crvae app` started on the shipped checkpoint, its page loaded more often than the
kernel cap, a request from a rebound name refused, then the command killed outright (SIGKILL, no handler runs): Voila,
every kernel and the temporary folder must be gone. See 30a_face_app, "The server"."""
import http.client, os, re, signal, subprocess, sys, time, uuid
from pathlib import Path

import pytest

pytest.importorskip('voila', reason='the app needs Voila (pip install voila)')
psutil = pytest.importorskip('psutil', reason='counting the server processes needs psutil')

from crvae.app import APP_MAX_KERNELS, free_port


def _ours(mark) -> list:
    "The live processes started with our marker in their environment: (pid, 'voila' | 'kernel' | 'other')."
    found = []
    for p in psutil.process_iter(['cmdline']):
        try:
            if p.environ().get('CRVAE_APP_TEST_MARK') != mark or p.status() == psutil.STATUS_ZOMBIE: continue
            cmd = ' '.join(p.info['cmdline'] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied): continue
        found.append((p.pid, 'kernel' if 'ipykernel' in cmd else 'voila' if 'serve_voila' in cmd else 'other'))
    return found


def _get(port, host=None, timeout=120):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        c.request('GET', '/', headers={'Host': host} if host else {})
        r = c.getresponse(); return r.status, r.read().decode('utf8', 'replace')
    finally: c.close()


def _wait_until(cond, timeout, step=0.3):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond(): return True
        time.sleep(step)
    return cond()


@pytest.fixture
def app(tmp_path):
    "`crvae app --no-browser` on the shipped checkpoint in a process of its own; its processes found by an env marker."
    from crvae.tool import fine_tuning_block
    from crvae.data import load_avatars
    fine_tuning_block('acvae-gan-avatars64', data=load_avatars(1000, 64, progress=False))   # measured once, reused by the app
    port, mark, log = free_port(), uuid.uuid4().hex, tmp_path/'app.log'
    env = dict(os.environ, PYTHONUNBUFFERED='1', CRVAE_APP_TEST_MARK=mark)
    with open(log, 'wb') as f:
        proc = subprocess.Popen([sys.executable, '-m', 'crvae', 'app', '--port', str(port), '--no-browser'], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        up = _wait_until(lambda: proc.poll() is not None or 'Voilà is running at' in log.read_text('utf8', 'replace'), 45)
        assert up and proc.poll() is None, log.read_text()[-3000:]
        yield proc, port, mark, log
    finally:
        for pid, _ in _ours(mark) + [(proc.pid, 'crvae')]:      # whatever a failed test left: only our own processes
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
        proc.wait()


def test_kernels_capped_host_checked_nothing_remote_and_all_gone_after_sigkill(app):
    proc, port, mark, log = app
    voila = [psutil.Process(pid).cmdline() for pid, what in _ours(mark) if what == 'voila']
    folder = Path(next(a for a in voila[0] if a.endswith('.ipynb'))).parent      # the temporary folder it serves from
    assert folder.name.startswith('crvae-app-') and folder.exists(), voila
    for host in ('evil.example:%d' % port, 'localhost:%d' % (port + 1)):     # DNS rebinding; another port
        status, _ = _get(port, host)
        assert status == 403, (host, status)
    assert [k for k in _ours(mark) if k[1] == 'kernel'] == []                # refused before any kernel starts
    for i in range(APP_MAX_KERNELS + 1):                                       # abandoned page loads (no websocket)
        status, page = _get(port)
        assert status == 200, page[:300]
        assert len([k for k in _ours(mark) if k[1] == 'kernel']) <= APP_MAX_KERNELS, _ours(mark)
    remote = re.findall(r'(?:href|src)\s*=\s*["\']?(?:https?:)?//[^"\' >]+|import\(\s*["\']https?://[^"\']+', page)
    assert remote == [], remote                                              # nothing fetched from another site
    assert {k[1] for k in _ours(mark)} >= {'voila', 'kernel'}
    os.kill(proc.pid, signal.SIGKILL); proc.wait()                            # no handler of crvae app runs
    assert _wait_until(lambda: _ours(mark) == [], 20), f'left running after crvae app was killed: {_ours(mark)}'
    assert _wait_until(lambda: not folder.exists(), 5), f'{folder} left behind'


@pytest.mark.slow                                                             # a second start of the app: 20-40 s
def test_sighup_stops_the_server_and_removes_its_folder(app):
    "The terminal of `crvae app` closed (SIGHUP): the command stops Voila's whole process group and removes the folder."
    proc, port, mark, log = app
    voila = [psutil.Process(pid).cmdline() for pid, what in _ours(mark) if what == 'voila']
    folder = Path(next(a for a in voila[0] if a.endswith('.ipynb'))).parent
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(30) == 0, log.read_text()[-2000:]
    assert _wait_until(lambda: _ours(mark) == [], 10) and not folder.exists(), (_ours(mark), folder)
