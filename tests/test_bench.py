"`crvae bench`: the JSON's structure and positive figures on a 1-step tiny run, the switches, the errors. Never a timed test."
import contextlib, io, json, sys

import pytest
import torch

import crvae.layers, crvae.training
from crvae import bench, measure
from crvae.core import main

TINY = ['--config', 'tiny', '--device', 'cpu', '--batch', '4', '--steps', '1', '--warmup', '1', '--repeats', '1',
        '--eval-batch', '8', '--matmul-n', '128', '--threads', '1']


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "One 1-step tiny run of crvae-gan and vae-gan through the command line: (exit code, stdout, the --out file's JSON)."
    out = tmp_path_factory.mktemp('bench')/'bench.json'
    threads = torch.get_num_threads()
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        code = main(['bench', '--models', 'crvae-gan,vae-gan', *TINY, '--no-memory', '--json', '--out', str(out)])
    torch.set_num_threads(threads)
    return code, so.getvalue(), json.loads(out.read_text()) if out.exists() else None


def pos(x): return isinstance(x, (int, float)) and x > 0


def test_json_structure_and_positive_figures(tiny_run):
    code, stdout, res = tiny_run
    assert code == 0
    assert json.loads(stdout) == res                                   # --json prints what --out writes
    assert res['format'] == bench.BENCH_FORMAT and res['settings']['batch'] == 4 and res['settings']['preset'] == 'tiny'
    assert res['machine']['device'] == 'cpu' and res['machine']['threads'] == 1
    assert pos(res['matmul']['flops']) and res['matmul']['n'] == 128
    for la in (res['loadavg_start'], res['loadavg_end']): assert la is None or len(la) == 3
    assert set(res['models']) == {'crvae-gan', 'vae-gan'}
    for name, m in res['models'].items():
        assert pos(m['params']['total']) and m['params']['total'] == m['params']['generator'] + m['params']['discriminator']
        t = m['train']
        assert pos(t['images_per_s']) and pos(t['step_s_median']) and len(t['step_s']) == 1 and len(t['warmup_s']) == 1
        assert pos(t['get_batch_s']) and 0 < t['data_share'] < 1
        f = m['flops']
        assert pos(f['per_step']) and pos(f['per_image']) and pos(f['achieved_per_s']) and pos(f['matmul_share']) and f['error'] is None
        assert pos(m['eval']['inference_ms']) and pos(m['eval']['generation_ms']) and m['eval']['batch'] == 8
        mem = m['memory']
        assert mem['method'] == 'none' and pos(mem['resident_bytes']) and pos(mem['activations']['estimate_bytes'])
        assert mem['activations']['generator_saved'] == sum(mem['activations']['generator_phase'].values())
    rows = {r['quantity']: r for r in res['comparison']}
    assert pos(rows['inference ms (encode a batch)']['ratio']) and pos(rows['generation ms (decode a batch)']['ratio'])
    assert rows['training memory GB']['ratio'] is None                # --no-memory
    assert rows['parameters M (all)']['paper_ratio'] == round(130 / 164, 2)
    assert res['projection'] is None                                  # acvae-gan was not measured


def test_report_and_compare(tiny_run):
    res = tiny_run[2]
    text = bench.bench_report(res)
    assert 'the paper (Titan X) against ours' in text and 'crvae-gan' in text and 'GFLOP/s' in text
    rows = bench.compare_results(res, res)
    assert len(rows) == 10 and all(r['new_over_old'] == 1.0 for r in rows if r['old'])


def test_cli_tables_projection_and_compare(run_cli, tmp_path, tiny_run):
    old = tmp_path/'old.json'
    old.write_text(json.dumps(tiny_run[2]))
    code, out, err = run_cli('bench', '--models', 'vae-gan', *TINY, '--no-memory', '--compare', old)
    assert code == 0, err
    assert 'matmul 128x128 fp32' in out and '| vae-gan |' in out and 'against' in out and 'vae-gan: building' in err


def test_projection_arithmetic():
    p = bench.project_wall_time(3400)
    assert p['steps'] == 150 * (163_000 // 128) and p['images'] == p['steps'] * 128
    assert abs(p['hours'] - p['images'] / 3400 / 3600) < 1e-12 and p['hours'] < 2
    info = dict(device='cpu', device_name='cpu')
    assert bench.projection({}, 'paper', info, 128) is None
    q = bench.projection({'acvae-gan': dict(train=dict(images_per_s=100.0))}, 'paper', info, 128)
    assert q['gpu_measured'] is False and q['meets_goal'] is None and abs(q['hours'] - q['images'] / 100 / 3600) < 1e-9


def test_ablations_run_and_restore_patches():
    rows = bench.bench_ablations('crvae-gan', ['onednn-lstm', 'unfused-adam', 'channels-first', 'fp32'], 'tiny', 'cpu', batch=4, steps=1)
    by = {r['variant']: r for r in rows}
    assert list(by) == ['baseline', 'onednn-lstm', 'unfused-adam', 'channels-first', 'fp32']
    for v in ('baseline', 'onednn-lstm', 'unfused-adam', 'channels-first'): assert pos(by[v]['images_per_s']) and pos(by[v]['vs_baseline'])
    assert by['baseline']['vs_baseline'] == 1.0 and 'not applicable' in by['fp32']['note']
    assert crvae.layers.run_lstm.__name__ == 'run_lstm' and crvae.training._adam.__name__ == '_adam'
    assert bench.check_ablations(['all'], 'cpu') == [k for k, a in bench.ABLATIONS.items() if 'cpu' in a.devices]


def test_ablation_switches_change_what_they_say():
    faces = measure.synthetic_faces(8, 32)
    with bench.ABLATIONS['unfused-adam'].build():
        tr = measure.make_trainer('vae-gan', 'tiny', 4, 'cpu', faces)
    assert all(not o.defaults.get('fused') and not o.defaults.get('foreach') for o in tr.opts.values())
    assert any(o.defaults.get('fused') or o.defaults.get('foreach') for o in measure.make_trainer('vae-gan', 'tiny', 4, 'cpu', faces).opts.values())
    lstm, x = torch.nn.LSTM(4, 8, batch_first=True), torch.randn(2, 3, 4)
    with bench.ABLATIONS['onednn-lstm'].run():
        assert crvae.layers.run_lstm is bench._default_kernel_lstm
        torch.testing.assert_close(crvae.layers.run_lstm(lstm, x), lstm(x)[0])
    assert measure.make_trainer('vae-gan', 'tiny', 4, 'cpu', faces, ['channels_last=true']).tcfg.channels_last


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='peak RSS is read from /proc')
def test_cpu_memory_probe_in_a_fresh_process():
    m = measure.cpu_peak_memory('vae-gan', 'tiny', batch=4, threads=1)
    assert 'error' not in m, m
    assert m['method'] == 'cpu-peak-rss' and pos(m['train_peak_bytes']) and m['peak_rss'] >= m['built_rss'] > m['base_rss'] > 0


def test_activation_memory_on_meta():
    c, v = measure.activation_memory('crvae-gan', 'paper', 128), measure.activation_memory('vae-gan', 'paper', 128)
    assert abs(c['params'] - 20.53e6) < 0.01e6 and abs(v['params'] - 22.80e6) < 0.01e6     # the released counts
    assert c['static_bytes'] == 16 * c['params'] and 'var_path' in c['generator_phase'] and 'var_path' not in v['generator_phase']
    for part in ('encoder', 'decoder'):                                # the shared convolutions save the same tensors
        assert abs(c['generator_phase'][part] - v['generator_phase'][part]) < 0.01 * v['generator_phase'][part]
    assert c['generator_phase']['D.trunk'] > 1.5 * v['generator_phase']['D.trunk']


def test_data_bench_images_per_second():
    d = bench.bench_data(n_avatars=16, n_celeba=8, workers=1)
    assert set(d) == {'avatars', 'celeba'} and all(pos(v['images_per_s']) and v['images'] > 0 for v in d.values())


@pytest.mark.parametrize('args,msg', [
    (['--models', 'crvae-gna'], 'did you mean crvae-gan'),
    (['--models', 'vae-gan', '--ablate', 'onednn'], 'did you mean onednn-lstm'),
    (['--models', 'none', '--ablate', 'compile'], '--ablate needs at least one model'),
    (['--models', 'vae-gan', '--batch', '2'], 'use at least 4'),
    (['--models', 'vae-gan', '--config', 'huge'], 'use tiny or paper'),
    (['--models', 'vae-gan', '--steps', '0'], '--steps must be a positive integer'),
    (['--models', 'vae-gan', '--source', 'celeba'], 'use synthetic or avatars'),
])
def test_user_errors(run_cli, args, msg):
    code, out, err = run_cli('bench', '--device', 'cpu', '--matmul-n', '16', *args)
    assert code == 2 and msg in err and err.startswith('crvae bench: error:'), err


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_asked_for_without_a_gpu(run_cli):
    code, out, err = run_cli('bench', '--device', 'cuda')
    assert code == 2 and 'CUDA is not available' in err
