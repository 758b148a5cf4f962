"Tests of crvae.layers: each building block against a direct computation; each fails on a wrong reshape, order or axis."
import math

import pytest
import torch
import torch.nn as nn

from crvae.core import UserError
from crvae.layers import (CReLU, LearnableBias, TorchDropout, EncoderConvStack, DecoderUpStack, to_blocks, from_blocks,
                          ChannelRecurrentPath, lstm_forget_bias, concat_blocks, AttributeEmbedding, AttributeAttention,
                          MinibatchDiscrimination, DiscriminatorTrunk, GANHead, MIHead, FCPrior, LSTMPrior)

nparam = lambda m: sum(p.numel() for p in m.parameters())


def test_crelu_and_bias():
    x = torch.randn(2, 3, 5, 5)
    y = CReLU()(x)
    assert y.shape == (2, 6, 5, 5)
    assert torch.equal(y[:, :3], x.clamp(min=0)) and torch.equal(y[:, 3:], (-x).clamp(min=0))
    b = LearnableBias(3, 5, 5)
    assert nparam(b) == 75 and torch.equal(b(x), x)


def test_dropout_semantics():
    torch.manual_seed(0)
    x = torch.ones(8, 32, 4, 4)
    d = TorchDropout(0.5, spatial=True, lua=True, stochastic_inference=True)
    y = d(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.amin((2, 3)), y.amax((2, 3)))              # whole channels
    d.eval(); assert not torch.equal(d(x), d(x))                     # stochastic at evaluation
    assert torch.equal(TorchDropout(0.5).eval()(x), x * 0.5)
    assert torch.equal(TorchDropout(0.5, lua=False).eval()(x), x)
    assert set(TorchDropout(0.5, lua=False)(x).unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(UserError): TorchDropout(1.0)


def test_conv_stacks_shapes_and_counts():
    enc, dec = EncoderConvStack(), DecoderUpStack()
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 256, 4, 4)
    out = dec(torch.randn(2, 64, 4, 4))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    assert (nparam(enc), nparam(dec)) == (2_551_392, 2_548_611)
    assert EncoderConvStack(stem=32)(torch.randn(1, 3, 64, 64)).shape == (1, 256, 4, 4)
    with pytest.raises(UserError): EncoderConvStack(widths=(1, 2, 3))


def test_block_t_is_channels_t():
    z = torch.randn(3, 64, 4, 4)
    b = to_blocks(z, 8)
    assert b.shape == (3, 8, 128)
    for t in range(8): assert torch.equal(b[:, t], z[:, 8*t:8*(t+1)].reshape(3, -1))
    assert torch.equal(from_blocks(b, (64, 4, 4)), z)
    f = torch.randn(3, 1024)
    assert torch.equal(to_blocks(f, 8)[:, 2], f[:, 256:384])
    with pytest.raises(UserError): to_blocks(torch.randn(1, 10, 2, 2), 8)


def test_forget_gate_bias_is_input_side_forget_gate():
    lstm = lstm_forget_bias(nn.LSTM(4, 6, num_layers=2, batch_first=True))
    for k in range(2):
        b = getattr(lstm, f'bias_ih_l{k}')
        assert torch.equal(b[6:12], torch.ones(6)) and not torch.equal(b[:6], torch.ones(6))


@pytest.mark.parametrize('bn', [False, True])
def test_recurrent_path_is_causal_over_blocks(bn):
    torch.manual_seed(0)
    p = ChannelRecurrentPath(32, 16, 8, bn=bn).eval()
    z = torch.randn(2, 16, 4, 2)                               # T=4 blocks of 4 channels x 4 x 2 = 32
    base = p(to_blocks(z, 4))
    assert base.shape == (2, 4, 8)
    for t in range(4):
        z2 = z.clone(); z2[:, 4*t:4*t+4] += 0.5
        d = (p(to_blocks(z2, 4)) - base).abs().amax((0, 2))
        assert (d[:t] == 0).all() and (d[t:] > 0).all(), (t, d)


def test_concat_blocks_interleaves():
    h = torch.arange(4.).reshape(1, 4, 1, 1)                    # T=2 blocks of 2 channels
    e = torch.tensor([10., 20.]).reshape(1, 2, 1, 1, 1)        # one channel per block
    assert concat_blocks(h, e, 2).flatten().tolist() == [0., 1., 10., 2., 3., 20.]
    assert AttributeEmbedding(40, 128)(torch.randn(5, 8, 40)).shape == (5, 8, 128)


def test_attention_columns_entropy_rowsum():
    torch.manual_seed(0)
    att = AttributeAttention(8, 40)
    assert torch.allclose(att.M.sum(0), torch.ones(40))
    y = torch.randn(4, 40)
    ys = att(y)
    assert ys.shape == (4, 8, 40)
    for t in range(8): assert torch.allclose(ys[:, t], att.M[t] * y)
    # entropy by hand; the row-sum term at a uniform mask is 0
    M = att.M.detach()
    assert torch.isclose(att.entropy(), -(M * M.log()).sum(0).mean())
    assert AttributeAttention(8, 40, init_std=0.0).rowsum_loss().item() == pytest.approx(0.0, abs=1e-10)
    h0 = att.entropy().item()
    opt = torch.optim.SGD(att.parameters(), lr=1.0)
    for _ in range(30): opt.zero_grad(); att.entropy().backward(); opt.step()
    assert att.entropy().item() < h0
    assert torch.allclose(att.M.sum(0), torch.ones(40))


def test_minibatch_discrimination_equals_loop():
    torch.manual_seed(0)
    mbd = MinibatchDiscrimination(10, kernels=4, dims=3, init_std=0.3)
    f = torch.randn(6, 10)
    with torch.no_grad():
        out = mbd(f)
        M = (f @ mbd.T).reshape(6, 4, 3)
    ref = torch.tensor([[sum(math.exp(-(M[i, k] - M[j, k]).abs().sum().item()) for j in range(6)) / 6
                         for k in range(4)] for i in range(6)])
    assert out.shape == (6, 14) and torch.equal(out[:, :10], f)
    assert torch.allclose(out[:, 10:], ref, atol=1e-6)
    assert nparam(MinibatchDiscrimination(1024, 100, 5)) == 512_000


def test_discriminator_parts_counts():
    tr, gh, mh = DiscriminatorTrunk(), GANHead(4096), MIHead(256, (64, 4, 4))
    f = tr(torch.randn(3, 3, 64, 64))
    assert f.shape == (3, 256, 4, 4) and gh(f.flatten(1)).shape == (3,) and mh(f).shape == (3, 64, 4, 4)
    assert (nparam(tr), nparam(gh), nparam(mh)) == (1_619_328, 4_708_453, 1_202_560)
    assert nparam(DiscriminatorTrunk((32, 64, 128, 256), stem=32)) == 577_120


def test_priors():
    fp, lp = FCPrior(40, (64, 4, 4)), LSTMPrior(40, (64, 4, 4), 8)
    assert (nparam(fp), nparam(lp)) == (2_141_184, 252_160)
    mu, lv = lp(torch.randn(2, 8, 40))
    assert mu.shape == lv.shape == (2, 64, 4, 4)
    lin = FCPrior(40, (1024,), hidden=0)
    assert nparam(lin) == 2 * (40 * 1024 + 1024) and lin(torch.randn(2, 40))[0].shape == (2, 1024)
