"""crVAE Table 2 at the paper's search length: the shipped vae-gan and crvae-gan complete N test faces per mask with 300
Adam steps on z (the report's figure completes 4 faces with 40 steps, to stay within its 10 minutes).

    python tools/completion_study.py [--n 100] [--steps 300] [--out crvae/assets/results/completion-study.json]

The faces are the figure's own choice (`pick_faces`, seed 0), the objective and its weights the figure config's. The JSON
holds each mask's masked MSE with its standard error over the faces, the classifiers' realism proxies, and the sha256 of
each checkpoint's weights: `crvae reproduce` judges crVAE Table 2's claim from it when the shipped weights still match,
and from its own small figure otherwise. About an hour on one busy CPU thread."""
import argparse, os, sys, time
from pathlib import Path

ROLES = ('vae-gan', 'crvae-gan')

def main(n:int, steps:int, out:Path, seed:int=0):
    from crvae.core import save_json, checkpoints_home, assets_home
    from crvae.runs import load
    from crvae.data import load_faces, to_float
    from crvae.figures import RunSet, pick_faces, figure_config
    from crvae.completion import completion_study, default_realism, MASKS
    from crvae.runs import sha256_file
    from crvae.shipping import shipped_name
    names = {r: shipped_name(r) for r in ROLES}
    models = {r: load(names[r]) for r in ROLES}
    d = models['vae-gan'].run['data']
    faces = load_faces(d['data'], d.get('root'), d['size'], d['n'], d.get('seed', 0), progress=False)
    runs = RunSet(list(models.values()), faces=faces)
    test = pick_faces(runs, n, seed, 'crvae-fig8')
    realism, note = default_realism(runs)
    note = note.replace(str(assets_home()), 'assets')      # no machine path in the shipped JSON: the classifiers' folder, relative
    if os.environ.get('CRVAE_DATA'): note = note.replace(str(Path(os.environ['CRVAE_DATA']).resolve()), '$CRVAE_DATA')
    cfg = figure_config('paper')
    t0 = time.time()
    st = completion_study(models, to_float(test.images), test.attrs, tuple(MASKS), steps, cfg.completion_lr, cfg.gamma, cfg.tau,
                          cfg.warm_start, seed, realism)
    save_json(out, dict(n_faces=len(test), steps=steps, lr=cfg.completion_lr, gamma=cfg.gamma, tau=cfg.tau, warm_start=cfg.warm_start,
                        seed=seed, rows=st['rows'], realism=note, seconds=round(time.time() - t0, 1),
                        checkpoints={r: dict(name=names[r], weights_sha256=sha256_file(checkpoints_home()/names[r]/'model.safetensors'))
                                     for r in ROLES},
                        command=f'python tools/completion_study.py --n {n} --steps {steps}'))
    for r in st['rows']: print(r)
    print(f'wrote {out} in {time.time() - t0:.0f} s')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=100); p.add_argument('--steps', type=int, default=300)
    p.add_argument('--out', default=str(Path(__file__).resolve().parents[1]/'crvae'/'assets'/'results'/'completion-study.json'))
    a = p.parse_args()
    sys.exit(main(a.n, a.steps, Path(a.out)))
