"""Run by tests/test_training.py, under torchrun or alone: train a tiny model for a few steps with the public API,
then every process saves its parameters so the test can compare them."""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from crvae.data import load_avatars
from crvae.models import build_model
from crvae.config import make_configs
from crvae.training import Trainer
from crvae.engine import init_distributed


def main(model, out, steps, sync_bn, noise_seed='0'):
    torch.set_num_threads(1)
    rank, world = init_distributed('cpu')
    faces = load_avatars(n=1000, size=64, progress=False)
    mcfg, tcfg = make_configs(model, 'tiny', ['batch_size=16'], data_attrs=faces.n_attrs, steps=int(steps), sync_bn=sync_bn == '1',
                              device='cpu', progress=False, log_every=1, sample_every=0, ckpt_every=0)
    torch.manual_seed(0)
    m = build_model(model, mcfg)          # the same start everywhere (DDP would broadcast rank 0's anyway)
    Path(out).mkdir(parents=True, exist_ok=True)
    if rank == 0: save_file({k: v.detach().contiguous() for k, v in m.named_parameters()}, str(Path(out)/'params-init.safetensors'))
    torch.manual_seed(rank + 100 * int(noise_seed))   # each process its own noise, as `train` does
    Trainer(m, faces, tcfg, out).fit()
    save_file({k: v.detach().contiguous() for k, v in m.named_parameters()}, str(Path(out)/f'params-rank{rank}.safetensors'))


if __name__ == '__main__':
    main(*sys.argv[1:])
