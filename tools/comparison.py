"""Run the pre-registered comparison (notebook 88b_protocol) in the background, resumably, and keep its manifest.

    python tools/comparison.py status --runs RUNS                      # every run of the plan: steps done, running or not
    python tools/comparison.py watch --runs RUNS --code CODE [--jobs 2] # keep JOBS trainings going until the plan is done
    python tools/comparison.py check --runs RUNS --code CODE            # the LSTM-rate check, once both lr/8 runs pass 2,500 steps
    python tools/comparison.py ship --runs RUNS [--dry-run]              # seed 0 of every model as the shipped checkpoints
    python tools/comparison.py device-prep --runs RUNS --commit COMMIT   # a lent GPU machine: what its one call takes along
    python tools/comparison.py unpack --runs RUNS FILE                  # that call's results into the repository
    python tools/comparison.py faces [--code CODE]                      # the runs' 30k training faces, checked (built with CODE)
    python tools/comparison.py commit                                   # the code commit the manifest's runs train with
    bash tools/comparison_restart.sh DIR                                # all of it on a bare machine: code, faces, watcher

RUNS is a folder outside the repository for the run folders; CODE is a frozen copy of the code the runs train with
(`git archive COMMIT | tar -x -C CODE`), so that the work in the repository can change while they train. The manifest
`crvae/assets/protocol/manifest.csv` (shipped with the package, so `crvae reproduce` reads it) (run, role, seed, steps, steps done, status, code commit) tells a bare machine what to
restart: `watch` resumes every run that has a folder (`crvae train ... --resume`) and starts the others in the plan's order.
A run that reaches its steps is scored (`crvae protocol score`: the windowed scores at each budget) and its scores, learning
curves and summary are written to `crvae/assets/protocol/<run>/` at once, for a commit. Trainings run one thread each,
with `nice`, as `python -m crvae` from CODE; their output goes to RUNS/<run>.out.

When a session is lent a GPU machine (the `device` tool, 15 minutes in all), `device-prep` readies one call that trains
pending runs there in parallel (`tools/device_runs.sh`, which runs the `device` verb there) and `unpack` brings back the
runs it scored; see `device_prep`."""
import argparse, csv, io, json, os, signal, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get('CRVAE_PROTOCOL_RESULTS') or REPO/'crvae'/'assets'/'protocol')   # tests: elsewhere
FIELDS = ['run', 'role', 'seed', 'steps', 'steps_done', 'status', 'code_commit']
FACES = 'avatars/avatars-64px-n30000-seed0-*/images.npy'   # the runs' training faces under the data cache
FACES_SHA256 = 'eaba7ccd60c7f6df9f1d97408c6d070db93d02975bcc242a0a6e2a5129d4c6e3'   # ... and their sha256: every run trained on these


def _plan(code:Path) -> list[dict]:
    "The plan as the frozen code states it (the protocol the runs were started under)."
    out = subprocess.run([sys.executable, '-c', 'import json; from crvae.protocol import plan; print(json.dumps(plan()))'],
                         env=_env(code), cwd=code, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _env(code:Path|None) -> dict:
    "The trainings' environment: CODE's crvae (they also run with CODE as their folder), one thread; None: this checkout's."
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    return dict(env, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', CRVAE_PLOTS='1', **({'PYTHONPATH': str(code)} if code else {}))


def _steps_done(run:Path) -> int:
    "The step of the run's newest whole checkpoint (0: none yet)."
    ck = run/'checkpoints'
    done = [int(p.name[5:]) for p in ck.glob('step-*') if (p/'model.safetensors').exists() and (p/'state.pt').exists()]
    try: last = int(json.loads((run/'run.json').read_text()).get('last_step') or 0)
    except (OSError, ValueError): last = 0
    return max(done + [last]) if done or last else 0


def _alive(pidfile:Path) -> bool:
    try: pid = int(pidfile.read_text())
    except (OSError, ValueError): return False
    try: os.kill(pid, 0)
    except OSError: return False
    try: return 'crvae' in Path(f'/proc/{pid}/cmdline').read_text()
    except OSError: return True


def _write_manifest(rows:list[dict]):
    from crvae.core import atomic_write_text
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, lineterminator='\n'); w.writeheader(); w.writerows(rows)
    atomic_write_text(RESULTS/'manifest.csv', buf.getvalue())


def _read_manifest() -> dict:
    f = RESULTS/'manifest.csv'
    return {r['run']: r for r in csv.DictReader(f.open())} if f.exists() else {}


def manifest_commit() -> str:
    "The code commit the manifest's runs train with (the commonest one; '' before any run)."
    from collections import Counter
    c = Counter(r['code_commit'] for r in _read_manifest().values() if r['code_commit'])
    return c.most_common(1)[0][0] if c else ''


def training_faces(data:Path, code:Path|None=None, workers:int=1) -> Path:
    """The runs' 30k training faces under the data cache DATA, checked against FACES_SHA256. Missing ones are built with the
    frozen code CODE (`crvae data avatars --n 30000 --size 64 --seed 0`) where it is given; ValueError says the fix otherwise."""
    found = sorted(data.glob(FACES))
    if not found and code is not None:
        print(f'building the 30k training faces under {data} with {code} (about a minute on 2 cores)', file=sys.stderr)
        subprocess.run([sys.executable, '-m', 'crvae', 'data', 'avatars', '--n', '30000', '--size', '64', '--seed', '0',
                        '--workers', str(workers)], env=dict(_env(code), CRVAE_DATA=str(data)), cwd=code, check=True,
                       stdout=subprocess.DEVNULL)
        found = sorted(data.glob(FACES))
    if not found: raise ValueError(f"no 30k training faces under {data}: crvae data avatars --n 30000 --size 64 --seed 0")
    from crvae.runs import sha256_file
    got = sha256_file(found[0])
    if got != FACES_SHA256: raise ValueError(f"{found[0]} has sha256 {got[:12]}…, not the runs' {FACES_SHA256[:12]}…: rebuild it")
    return found[0]


def state(runs:Path, plan:list[dict], commit:str) -> list[dict]:
    """One manifest row per run of the plan, from the run folders and the results already collected. A run that is not scored
    and has no folder in RUNS is pending, whatever the manifest said: its checkpoints are not on this machine (a bare
    machine), so it starts again from step 0."""
    old, rows = _read_manifest(), []
    for r in plan:
        folder, scored = runs/r['name'], (RESULTS/r['name']/'scores.json').exists()
        done = _steps_done(folder) if folder.exists() else int(old.get(r['name'], {}).get('steps_done') or 0) if scored else 0
        if scored: status = 'scored'
        elif _alive(runs/f"{r['name']}.pid"): status = 'running'
        elif done >= r['steps']: status = 'trained'
        elif folder.exists(): status = 'stopped'
        else: status = 'pending'
        was = '' if status == 'pending' else old.get(r['name'], {}).get('code_commit') or commit
        rows.append(dict(run=r['name'], role=r['role'], seed=r['seed'], steps=r['steps'], steps_done=done, status=status,
                         code_commit=was))
    return rows


def start(run:dict, runs:Path, code:Path, extra=()):
    "Start (or resume) one training in the background, one thread, nice 5; its output to RUNS/<name>.out. `extra`: more options."
    folder = runs/run['name']
    cmd = run['command'].replace(f"RUNS/{run['name']}", str(folder)).split() + list(extra)
    if (folder/'run.json').exists(): cmd.append('--resume')
    cmd = ['nice', '-n', '5', sys.executable, '-m', 'crvae', *cmd[1:]]
    with open(runs/f"{run['name']}.out", 'ab') as out:
        p = subprocess.Popen(cmd, env=_env(code), cwd=code, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    (runs/f"{run['name']}.pid").write_text(str(p.pid))
    print(f"{time.strftime('%H:%M:%S')} started {run['name']} (pid {p.pid}){' --resume' if '--resume' in cmd else ''}", flush=True)
    return p


def collect(run:dict, runs:Path, code:Path, note:str):
    "Score a finished run and write its results into the repository (scores.json, curves.csv, log.csv, summary.json)."
    folder, dest = runs/run['name'], RESULTS/run['name']
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(REPO/'tools'/'collect_runs.py'), str(RESULTS), str(folder), '--note', note],
                   env=_env(code), cwd=code, check=True)
    tmp = dest/'scores.json.tmp'
    subprocess.run(['nice', '-n', '5', sys.executable, '-m', 'crvae', 'protocol', 'score', str(folder), '--role', run['role'],
                    '--seed', str(run['seed']), '--out', str(tmp)], env=_env(code), cwd=code, check=True)
    os.replace(tmp, dest/'scores.json')
    # the readings of its weights (attention, block profile) come from this checkout's code: they apply rules fixed before the
    # runs, with code added after the first runs finished (notebook 88b_protocol)
    subprocess.run(['nice', '-n', '5', sys.executable, '-m', 'crvae', 'protocol', 'readings', str(folder), '--role', run['role'],
                    '--seed', str(run['seed']), '--out', str(dest/'readings.json')], env=_env(None), cwd=REPO, check=True)
    print(f"{time.strftime('%H:%M:%S')} collected {run['name']} into {dest}", flush=True)


def next_runs(rows:list[dict], first=()) -> list[dict]:
    "The runs to start, in order: stopped ones (they resume), then pending ones; within each, `first` in its order, then the plan's."
    todo, first = [r for r in rows if r['status'] in ('stopped', 'pending')], list(first)
    return sorted(todo, key=lambda r: (r['status'] != 'stopped', first.index(r['run']) if r['run'] in first else len(first)))


def watch(runs:Path, code:Path, jobs:int, every:float, note:str, commit:str, first:tuple=()):
    """`first`: runs to start before the plan's order (scheduling only: settings, steps and rule are the plan's)."""
    plan = _plan(code)
    procs, starts, stop, unscored = {}, {}, [], set()
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop:
        rows = state(runs, plan, commit)
        _write_manifest(rows)
        by = {r['name']: r for r in plan}
        running = [r for r in rows if r['status'] == 'running']
        todo = [r for r in next_runs(rows, first) if starts.get(r['run'], 0) < 3]   # one that keeps failing: RUNS/<run>.out
        for r in todo[:max(0, jobs - len(running))]:
            procs[r['run']] = start(by[r['run']], runs, code)
            starts[r['run']] = starts.get(r['run'], 0) + 1
        for row in rows:                                   # the trainings go on while a finished run is scored
            if row['status'] == 'trained' and row['run'] not in unscored:
                try: collect(by[row['run']], runs, code, note)
                except subprocess.CalledProcessError as e:
                    unscored.add(row['run']); print(f"scoring {row['run']} failed (not retried until a new watch): {e}", flush=True)
        if not running and not todo and all(r['status'] == 'scored' for r in rows): print('the plan is done'); break
        for _ in range(int(every)):
            if stop: break
            time.sleep(1)
        for name, p in list(procs.items()):
            if p.poll() is not None: procs.pop(name)      # reap
    _write_manifest(state(runs, plan, commit))


def ship_commands(rows:list[dict], runs:Path, shipped:dict, results:dict) -> tuple[list[list[str]], list[str]]:
    """What `ship` runs, once seed 0 of every shipped model has all its steps: `crvae ship` of each seed-0 run (with as many
    weight snapshots as its checkpoint ships now, for crVAE Fig. 6), `crvae ship-results` of each later seed that is scored,
    and the results files to delete: the scores of seeds that did not come from the plan's steps (an earlier, shorter
    comparison), which would otherwise be averaged with the new seed 0. `shipped`: {role: snapshots it ships now};
    `results`: {file name: the step its scores were taken at}."""
    by = {(r['role'], int(r['seed'])): r for r in rows}
    seed0 = [by.get((role, 0)) for role in shipped]
    waiting = [f"{r['run']} ({int(r['steps_done']):,}/{int(r['steps']):,}, {r['status']})" for r in seed0
               if r is not None and not (r['status'] == 'scored' and int(r['steps_done']) >= int(r['steps']))]
    missing = [role for role, r in zip(shipped, seed0) if r is None]
    if missing or waiting:
        raise ValueError(f"not shipped: seed 0 of every shipped model must be scored at its steps first; "
                         f"{'; '.join(waiting + [f'{m}: not in the plan' for m in missing])}")
    cmds, keep = [], set()
    for role, snaps in shipped.items():
        cmds.append(['crvae', 'ship', str(runs/f'{role}-seed0'), '--name', f'{role}-avatars64', '--force'] +
                    (['--snapshots', str(snaps)] if snaps else []))
        for r in rows:
            if r['role'] == role and int(r['seed']) > 0 and r['status'] == 'scored':
                cmds.append(['crvae', 'ship-results', str(runs/r['run']), '--role', role, '--seed', str(r['seed'])])
                keep.add(f"{role}-seed{r['seed']}.json")
    steps = {r['role']: int(r['steps']) for r in rows}
    role_of = lambda f: f.rsplit('-seed', 1)[0]
    drop = sorted(f for f, step in results.items() if f not in keep and role_of(f) in shipped and step != steps[role_of(f)])
    return cmds, drop


def study_matches(study:Path, ck:Path) -> bool:
    "Whether the completion study `study` was computed on the checkpoints that ship in folder `ck` now (by their weights' sha256)."
    from crvae.runs import sha256_file
    st = json.loads(study.read_text())
    return all((ck/c['name']/'model.safetensors').is_file() and sha256_file(ck/c['name']/'model.safetensors') == c['weights_sha256']
               for c in st['checkpoints'].values())


def ship(runs:Path, dry:bool=False):
    "Ship seed 0 of each shipped model from the plan's runs, and the later seeds' scores, with this checkout's code."
    assets = Path(os.environ.get('CRVAE_ASSETS') or REPO/'crvae'/'assets')
    ck, res = assets/'checkpoints', assets/'results'
    shipped = {p.name.rsplit('-avatars64', 1)[0]: len(list((p/'snapshots').glob('*.safetensors')))
               for p in sorted(ck.glob('*-avatars64')) if (p/'model.safetensors').exists()}
    results = {f.name: int(json.loads(f.read_text())['result'].get('step') or 0) for f in sorted(res.glob('*-seed*.json'))}
    cmds, drop = ship_commands(list(_read_manifest().values()), runs, shipped, results)
    for c in cmds:
        print(' '.join(c), flush=True)
        if not dry: subprocess.run(['nice', '-n', '5', sys.executable, '-m', 'crvae', *c[1:]], env=_env(None), cwd=REPO, check=True)
    for f in drop:
        print(f'rm {res/f}  # scored at another step than the plan\'s', flush=True)
        if not dry: (res/f).unlink()
    study = RESULTS/'completion-study.json'     # crVAE Table 2 on 100 faces, computed on these seed-0 weights before they shipped
    if not dry and study.exists():
        if study_matches(study, ck):
            from crvae.core import atomic_write_bytes
            atomic_write_bytes(res/'completion-study.json', study.read_bytes())
            print(f'copied {study.name} into {res}: its checkpoints are the ones shipped now')
        else: print(f'{study.name} was computed on other weights: run python tools/completion_study.py again')
    print('then: run the notebooks that show the shipped checkpoints again')


def lstm_check(runs:Path, code:Path):
    """The protocol's LSTM-rate check (notebook 88b_protocol): the lr/8 runs' learning curves at steps 1,750-2,500 against the
    three full-rate seeds committed under nbs/results; writes RESULTS/lstm-rate-check.json with the rows it read."""
    prog = f"""
import json, sys
from pathlib import Path
from crvae.protocol import lstm_rate_decision, read_curves, window_steps, PROTOCOL
R, runs = Path({str(REPO/'nbs'/'results')!r}), Path({str(runs)!r})
arms = {{m: {{'lr': [read_curves(R/'learning'/f'tinybeta-{{m}}-seed0'/'curves.csv')] +
              [read_curves(R/'comparison'/f'{{m}}-seed{{s}}'/'curves.csv') for s in (1, 2)],
         'lr/8': read_curves(runs/f'{{m}}-seed0'/'curves.csv')}} for m in ('crvae-gan', 'acvae-gan')}}
d = lstm_rate_decision(arms)
keep = set(window_steps(PROTOCOL.budgets[0]))
d['lr/8 curves'] = {{m: [r for r in a['lr/8'] if int(float(r['step'])) in keep] for m, a in arms.items()}}
d['lr curves'] = 'nbs/results/learning/tinybeta-MODEL-seed0 and nbs/results/comparison/MODEL-seed1, -seed2 (curves.csv)'
print(json.dumps(d, indent=1))
"""
    out = subprocess.run([sys.executable, '-c', prog], env=_env(code), cwd=code, capture_output=True, text=True, check=True).stdout
    from crvae.core import atomic_write_text
    atomic_write_text(RESULTS/'lstm-rate-check.json', out)
    d = json.loads(out)
    for r in d['rows']: print(r)
    print(d['decision'])


# ---- a lent GPU machine: `device-prep` here, `device` there (tools/device_runs.sh), `unpack` here with what came back
DEVICE = REPO/'.device'           # git-ignored (.gitignore); the call carries it
WHEELS = ('fastcore', 'python-avatars', 'resvg-py')   # what the machine's image lacks of what training and scoring import


def device_pick(rows:list[dict], n:int, skip:int=2) -> list[str]:
    """The pending runs a lent machine trains: the next `n` in the plan's order after the `skip` that the watcher here starts
    next (it goes on while the machine works). Runs with a folder here (stopped, running) stay here."""
    todo = next_runs(rows)
    return [r['run'] for r in todo[skip:] if r['status'] == 'pending'][:n]


def _travel_bytes() -> int:
    "The bytes the `device` tool sends: tracked files and untracked ones git does not ignore, as they are on disk, and .device."
    ls = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO, capture_output=True,
                        check=True).stdout.decode().split('\0')
    files = [REPO/f for f in ls if f] + [p for p in DEVICE.rglob('*')]
    return sum(f.stat().st_size for f in files if f.is_file())


def device_prep(runs:Path, commit:str, n:int, data:Path):
    """Write .device/ for one call of the `device` tool: the frozen code (`git archive COMMIT`, without the shipped checkpoints),
    wheels of WHEELS for the machine's Python 3.12 and the runs it takes (`device_pick`); the faces here must be the runs'
    (the machine builds the 30k cache itself with `faces` and stops if its faces differ). Prints the call."""
    import shutil
    training_faces(data)   # ValueError names the fix
    pick = device_pick(state(runs, _plan(REPO), commit), n)
    if not pick: print('no pending run is left for a lent machine'); return
    shutil.rmtree(DEVICE, ignore_errors=True); (DEVICE/'code').mkdir(parents=True)
    tar = subprocess.run(['git', 'archive', commit, 'crvae', 'pyproject.toml'], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', str(DEVICE/'code')], input=tar, check=True)
    shutil.rmtree(DEVICE/'code'/'crvae'/'assets'/'checkpoints', ignore_errors=True)
    (DEVICE/'code'/'sitecustomize.py').write_text(   # CODE is the trainings' PYTHONPATH: Python imports this at their start
        '"Full fp32 on the lent GPU, as on the CPU: PyTorch runs cuDNN convolutions in TF32 unless told not to."\n'
        'import torch\ntorch.backends.cudnn.allow_tf32 = False\ntorch.backends.cuda.matmul.allow_tf32 = False\n')
    from importlib.metadata import version
    subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', '3.12',
                    '--implementation', 'cp', *[a for t in ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64')
                                                 for a in ('--platform', t)], '-d', str(DEVICE/'whl'),
                    *[f'{w}=={version(w)}' for w in WHEELS]], check=True)
    (DEVICE/'runs.txt').write_text(','.join(pick) + '\n')
    (DEVICE/'commit.txt').write_text(commit + '\n')
    mib = _travel_bytes() / 2**20
    print(f"runs for the lent machine ({len(pick)}): {', '.join(pick)}")
    print(f"the call sends {mib:.0f} MiB (limit 64)" + ('' if mib < 63 else
          ': too much. Move the shipped checkpoints out of the tree for the call and back after it: '
          'mv crvae/assets/checkpoints ../checkpoints-aside; ...; mv ../checkpoints-aside crvae/assets/checkpoints'))
    print('call: run(command="bash tools/device_runs.sh 540", carry=[".device"], timeout_s=590); then here: '
          'python tools/comparison.py unpack --runs RUNS FILES_AT/protocol.tar.gz')


def _log_last(run:Path) -> tuple[int, float]:
    "(step, training seconds) of the last line of the run's training log (a line every few steps; (0, 0) before the first)."
    try:
        step, _, secs = (run/'log.csv').read_text().rstrip().rsplit('\n', 1)[-1].split(',')[:3]
        return int(step), float(secs)
    except (OSError, ValueError): return 0, 0.0


def device_keep(done:dict, rate:float, left:float, steps:int) -> list[str]:
    """The runs to keep training: the most advanced ones (then in the given order) whose remaining steps, all together, the
    machine can train in `left` seconds at `rate` steps/s summed over its runs (the GPU shared evenly). `done`: steps so far."""
    order = sorted(done, key=lambda n: -done[n])           # stable: ties keep the plan's order
    keep, work = [], 0.0
    for n in order:
        work += steps - done[n]
        if work > rate * left: break
        keep.append(n)
    return keep


def device(runs:Path, code:Path, only:list[str], until:float, note:str, commit:str, dev:str='cuda', steps:int|None=None,
           reserve:float=240, probe:float=120):
    """On the lent machine: train `only` at once on `dev` in fp32 (`amp=false`, and no TF32: the sitecustomize.py that
    `device_prep` puts in CODE; the precision of the runs on the CPU), each
    with one CPU thread; score each that reaches its steps (on the CPU, as here), while the others train. `reserve` seconds
    before `until` the trainings still going are stopped; at `until` what was scored is packed into RESULTS/../protocol.tar.gz
    with device-report.json (each run's steps, seconds and images/s). `steps`: fewer steps, for a trial of this path only."""
    import tarfile, threading
    t0, plan = time.time(), {r['name']: r for r in _plan(code)}
    runs.mkdir(parents=True, exist_ok=True); RESULTS.mkdir(parents=True, exist_ok=True)
    extra = ['--device', dev, '--set', 'amp=false']
    procs, scorers, failed, stopping = {}, {}, {}, set()
    for name in only:
        run = dict(plan[name], **({'command': plan[name]['command'].replace(f"--steps {plan[name]['steps']}", f'--steps {steps}'),
                                   'steps': steps} if steps else {}))
        plan[name] = run
        procs[name] = start(run, runs, code, extra)

    def score(name):
        try: collect(plan[name], runs, code, note)
        except subprocess.CalledProcessError as e: failed[name] = str(e)

    t1, probed = time.time(), time.time() + probe         # the first look at the machine's speed: after start-up
    while time.time() - t0 < until and (procs or any(t.is_alive() for t in scorers.values())):
        if procs and time.time() > probed:                 # keep only the runs that can still finish in time
            probed = time.time() + 60
            done = {n: _log_last(runs/n)[0] for n in only}   # the machine's rate: all steps trained since the start
            rate = sum(done.values()) / (time.time() - t1)
            keep = device_keep({n: done[n] for n in procs if n not in stopping}, rate, until - reserve - (time.time() - t0),
                               max(plan[n]['steps'] for n in procs))
            print(f"{time.strftime('%H:%M:%S')} {rate:.1f} steps/s over all runs; keeping {len(keep)} of {len(procs)}", flush=True)
            for n in list(procs):
                if n not in keep and n not in stopping:
                    procs[n].send_signal(signal.SIGTERM); stopping.add(n)
                    failed[n] = f'stopped at step {done[n]}: the machine could not finish it in time with the others'
        for name, p in list(procs.items()):
            if p.poll() is None:
                if time.time() - t0 > until - reserve: p.send_signal(signal.SIGTERM)   # it saves a checkpoint and stops
                continue
            procs.pop(name)
            if (at := _steps_done(runs/name)) >= plan[name]['steps']:
                scorers[name] = threading.Thread(target=score, args=(name,), daemon=True); scorers[name].start()
            else: failed.setdefault(name, f'stopped at step {at} (exit {p.returncode}): see {name}.out')
        time.sleep(5)
    report = {}
    for name in only:
        try: info = json.loads((runs/name/'run.json').read_text())
        except (OSError, ValueError): info = {}
        (logged, secs), bs = _log_last(runs/name), int(info.get('model_config', {}).get('batch_size') or 64)
        report[name] = dict(steps_done=_steps_done(runs/name), steps=plan[name]['steps'], steps_logged=logged,
                            train_seconds=round(secs, 1), images_per_s=round(logged * bs / secs, 1) if secs else None,
                            scored=(RESULTS/name/'scores.json').exists() and (RESULTS/name/'readings.json').exists(),
                            problem=failed.get(name, ''))
    from crvae.core import save_json
    save_json(RESULTS/'device-report.json', dict(device=dev, parallel=len(only), note=note, commit=commit,
                                                 seconds=round(time.time() - t0), runs=report))
    with tarfile.open(RESULTS.parent/'protocol.tar.gz', 'w:gz') as t: t.add(RESULTS, arcname='protocol')
    for name, r in report.items(): print(name, r, flush=True)


def unpack(runs:Path, archive:Path) -> list[str]:
    """Copy the runs a lent machine scored (`device`'s protocol.tar.gz) into the results, as `collect` would have, and mark
    them in the manifest. A run that has a folder here too is left out, named: stop it first, or keep its local result."""
    import tarfile, tempfile
    from crvae.core import atomic_write_bytes
    got, old = [], _read_manifest()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(archive) as t:
            try: t.extractall(tmp, filter='data')           # Python 3.11.4 and later: no links or paths out of tmp
            except TypeError: t.extractall(tmp)
        src = Path(tmp)/'protocol'
        rep = json.loads((src/'device-report.json').read_text())
        for name, r in rep['runs'].items():
            if not r['scored']: print(f"{name}: not scored there ({r['steps_done']:,} of {r['steps']:,} steps) {r['problem']}"); continue
            if (runs/name).exists() or (RESULTS/name/'scores.json').exists():
                print(f'{name}: left out, it has a run folder or results here too'); continue
            for f in sorted((src/name).iterdir()): atomic_write_bytes(RESULTS/name/f.name, f.read_bytes())
            if name in old: old[name].update(steps_done=r['steps_done'], status='scored', code_commit=rep.get('commit', ''))
            got.append(name); print(f"{name}: scored on the lent machine, {r['images_per_s']} images/s")
    if got: _write_manifest(list(old.values()))
    return got


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('what', choices=('status', 'watch', 'check', 'ship', 'device-prep', 'device', 'unpack', 'faces', 'commit'))
    ap.add_argument('archive', nargs='?', help="unpack: the lent machine's protocol.tar.gz")
    ap.add_argument('--runs', help='folder of the run folders (outside the repository); every verb but faces and commit')
    ap.add_argument('--code', help='frozen copy of the code the runs train with (default: this checkout)')
    ap.add_argument('--commit', default='', help='the commit CODE was archived from (recorded in the manifest)')
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--first', default='', help='comma-separated runs to start before the plan order, in the order given, e.g. '
                    'the runs that can finish before the machine goes back (scheduling only)')
    ap.add_argument('--dry-run', action='store_true', help='ship: print the commands, run none')
    ap.add_argument('--only', default='', help='device: the comma-separated runs to train (device-prep writes them)')
    ap.add_argument('--until', type=float, default=540, help='device: seconds until the results are packed')
    ap.add_argument('--device', default='cuda', help='device: where the trainings run')
    ap.add_argument('--steps', type=int, help='device: fewer steps than the plan, for a trial of this path only')
    ap.add_argument('--reserve', type=float, default=240, help='device: seconds kept for scoring at the end')
    ap.add_argument('--workers', type=int, default=1, help='faces: processes that build missing faces')
    ap.add_argument('--n', type=int, default=12, help='device-prep: how many pending runs the lent machine takes')
    ap.add_argument('--every', type=float, default=60, help='seconds between checks')
    ap.add_argument('--note', default='trained at 1 thread beside another training on 2 cores',
                    help="the load the runs train under (recorded in each run's summary)")
    a = ap.parse_args()
    if a.what in ('faces', 'commit'):
        from crvae.core import data_home
        try:
            if a.what == 'commit':
                if not (c := manifest_commit()): raise ValueError('the manifest names no code commit yet')
                print(c)
            else: print(training_faces(data_home(), Path(a.code).resolve() if a.code else None, a.workers))
        except ValueError as e: print(f'error: {e}', file=sys.stderr); sys.exit(2)
        sys.exit()
    if not a.runs: ap.error(f'{a.what} needs --runs')
    runs, code = Path(a.runs).resolve(), Path(a.code or REPO).resolve()
    runs.mkdir(parents=True, exist_ok=True)
    if a.what == 'status':
        rows = state(runs, _plan(code), a.commit)
        for r in rows: print(f"{r['run']:28s} {r['status']:8s} {r['steps_done']:>6}/{r['steps']:<6} {r['code_commit']}")
    elif a.what == 'check': lstm_check(runs, code)
    elif a.what == 'ship':
        try: ship(runs, a.dry_run)
        except ValueError as e: print(f'error: {e}', file=sys.stderr); sys.exit(2)
    elif a.what == 'device-prep':
        from crvae.core import data_home
        try: device_prep(runs, a.commit, a.n, data_home())
        except ValueError as e: print(f'error: {e}', file=sys.stderr); sys.exit(2)
    elif a.what == 'device': device(runs, code, [x for x in a.only.split(',') if x], a.until, a.note, a.commit, a.device, a.steps,
                                     a.reserve)
    elif a.what == 'unpack': unpack(runs, Path(a.archive))
    else: watch(runs, code, a.jobs, a.every, a.note, a.commit, tuple(x for x in a.first.split(',') if x))
