__version__ = "0.1.0"

def load(path_or_name, device='cpu', **kwargs):
    "A trained model ready to sample, from a run folder or a shipped checkpoint's name: `crvae.load('acvae-gan-avatars64')` (`crvae.runs.load`)."
    from .runs import load as _load          # imported on first use, so `import crvae` stays light
    return _load(path_or_name, device, **kwargs)
