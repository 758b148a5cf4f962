"""Copy the learning curves of finished comparison runs into the repository: `python tools/collect_runs.py DEST RUN...`.

For each run folder RUN (made by `crvae train ... --out RUN`), DEST/<run name>/ gets its `curves.csv` (a point every
`eval_every` steps on the validation faces), its `log.csv` (the training losses) and a `summary.json` with the command,
the budget, the wall time and the machine from the run's `run.json`. The run folder's own location is replaced by
`RUNS/` in the command, so no machine path is committed. Nothing else of the run is copied (weights ship with
`crvae ship` / `crvae ship-results`)."""
import json, re, shutil, sys
from pathlib import Path

def collect(run:Path, dest:Path) -> Path:
    info = json.loads((run/'run.json').read_text())
    missing = [f for f in ('curves.csv', 'log.csv') if not (run/f).exists()]
    if missing: sys.exit(f"{run} has no {', '.join(missing)}: is it a finished `crvae train` run folder?")
    out = dest/run.name
    out.mkdir(parents=True, exist_ok=True)
    for f in ('curves.csv', 'log.csv'): shutil.copyfile(run/f, out/f)
    steps, secs = int(info['last_step']), float(info['train_seconds'])
    batch = info['model_config']['batch_size']
    cmd = re.sub(r'--out \S+', f'--out RUNS/{run.name}', info['command'])
    summary = dict(name=run.name, model=info['model'], steps=steps, train_seconds=secs,
                   images_per_s=round(steps * batch / secs, 1), command=cmd, machine=info['machine'], device=info['device'],
                   torch=info['torch_version'], crvae=info['crvae_version'],
                   load_note='trained at 1 thread beside one other training (and at times the test suite) on 2 cores')
    (out/'summary.json').write_text(json.dumps(summary, indent=1) + '\n')
    return out

if __name__ == '__main__':
    if len(sys.argv) < 3: sys.exit(__doc__)
    for r in sys.argv[2:]: print(collect(Path(r), Path(sys.argv[1])))
