"""Copy the learning curves of finished comparison runs into the repository:
`python tools/collect_runs.py DEST RUN... [--note TEXT]`.

For each run folder RUN (made by `crvae train ... --out RUN`), DEST/<run name>/ gets its `curves.csv` (a point every
`eval_every` steps on the validation faces), its `log.csv` (the training losses) and a `summary.json` with the command
(as the model cards give it: run folders by their names, no machine path), the budget, the wall time and the machine
from the run's `run.json`, and `--note` (e.g. the load the run trained under). Every file is written atomically.
Nothing else of the run is copied (weights ship with `crvae ship` / `crvae ship-results`)."""
import argparse
from pathlib import Path

from crvae.core import atomic_write_bytes, check, save_json
from crvae.runs import read_run
from crvae.shipping import train_command

def collect(run:Path, dest:Path, note:str|None=None) -> Path:
    info = read_run(run)
    missing = [f for f in ('curves.csv', 'log.csv') if not (run/f).exists()]
    check(not missing, f"{run} has no {', '.join(missing)}: is it a finished `crvae train` run folder?")
    out = dest/run.name
    for f in ('curves.csv', 'log.csv'): atomic_write_bytes(out/f, (run/f).read_bytes())
    steps, secs = int(info['last_step']), float(info['train_seconds'])
    summary = dict(name=run.name, model=info['model'], steps=steps, train_seconds=secs,
                   images_per_s=round(steps * info['model_config']['batch_size'] / secs, 1),
                   command=train_command(dict(info, path=str(run))), machine=info['machine'], device=info['device'],
                   torch=info['torch_version'], crvae=info['crvae_version'], **({'load_note': note} if note else {}))
    save_json(out/'summary.json', summary)
    return out

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dest'); p.add_argument('runs', nargs='+'); p.add_argument('--note')
    a = p.parse_args()
    for r in a.runs: print(collect(Path(r), Path(a.dest), a.note))
