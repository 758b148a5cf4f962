"Evaluation classifiers: input protocol, training, safetensors + card round trip, refusals, the `crvae classifiers` command."
import dataclasses, json

import pytest
import torch
import torch.nn.functional as F

from crvae.core import UserError
from crvae.data import FaceData, load_celeba, make_fake_celeba, to_float
from crvae.classifiers import (CLASSIFIER_FORMAT, AttributeClassifier, AttributeClassifierConfig, ClassifierTrainConfig,
                               RecognitionClassifier, RecognitionClassifierConfig, classifier_accuracy, dataset_id,
                               load_classifiers, recognition_split, recognition_targets, to_classifier_input,
                               train_classifier, train_classifiers)


@pytest.fixture(scope='module')
def trained(faces_1k, tmp_path_factory):
    "Tiny classifiers trained for a few steps on the 1,000-face set, saved under a temporary root."
    root = tmp_path_factory.mktemp('clf')
    torch.manual_seed(0)
    return train_classifiers(faces_1k, out=root, preset='tiny', device='cpu', progress=False), root


def test_input_is_128_bilinear():
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    up = F.interpolate(to_float(x), size=(128, 128), mode='bilinear', align_corners=False)
    assert torch.equal(to_classifier_input(x), up)
    net = AttributeClassifier(4, AttributeClassifierConfig.preset('tiny')).eval()
    assert torch.allclose(net(x), net(up), atol=1e-5)          # 64 px images are scored as their 128 px upsampling
    with pytest.raises(UserError, match='B, 3, H, W'): to_classifier_input(torch.zeros(3, 64, 64))


def test_recognition_net_shapes_and_presets():
    net = RecognitionClassifier({'a': 3, 'b': 5}, RecognitionClassifierConfig.preset('tiny'))
    logits, f = net(torch.zeros(2, 3, 64, 64), return_features=True)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {'a': (2, 3), 'b': (2, 5)} and f.shape == (2, 64)
    vgg = RecognitionClassifier({'a': 3}, RecognitionClassifierConfig(layers=('s8', 8, 'M', 16, 'M'), hidden=16))  # VGG blocks
    assert vgg(torch.zeros(2, 3, 64, 64))['a'].shape == (2, 3) and vgg.fc[0].in_features == 16 * 16 * 16
    with pytest.raises(UserError, match='did you mean'): RecognitionClassifierConfig.preset('defualt')
    with pytest.raises(UserError, match="use C, 'sC' or 'M'"): RecognitionClassifier({'a': 3}, RecognitionClassifierConfig(layers=('x8',)))


def test_card_and_round_trip(trained, faces_1k):
    clf, root = trained
    folder = root/dataset_id(faces_1k)
    assert clf.folder == folder and sorted(p.name for p in folder.iterdir()) == [
        'attributes.json', 'attributes.safetensors', 'recognition.json', 'recognition.safetensors']
    for kind in ('attributes', 'recognition'):
        card = json.loads((folder/f'{kind}.json').read_text())
        assert card['classifier_version'].startswith(f'{kind}-v{CLASSIFIER_FORMAT}-')
        assert card['dataset']['identity']['dataset'] == 'avatars' and card['dataset']['image_size'] == 64
        assert card['dataset']['identity']['attributes'] == faces_1k.attr_names
        assert set(card['accuracy']) >= {'train', 'valid', 'test', 'test_mean'} and card['samples']['test'] == int((faces_1k.split == 2).sum())
        assert {'crvae_version', 'architecture', 'training', 'weights'} <= set(card)
        assert card['training']['wall_seconds'] > 0 and card['training']['images_per_second'] > 0
    rec = json.loads((folder/'recognition.json').read_text())
    assert rec['architecture']['heads'] == {k: len(v) for k, v in faces_1k.part_names.items()}
    assert set(rec['accuracy']['test']) == set(faces_1k.part_names)
    back = load_classifiers(faces_1k, root=root)
    x = faces_1k.images[:16]
    a, b = clf.score(x), back.score(x)
    assert torch.allclose(a['attr_logits'], b['attr_logits'], atol=1e-5) and torch.allclose(a['features'], b['features'], atol=1e-5)
    assert back.versions == clf.versions
    # the card's test accuracy is the accuracy recomputed on the test split
    test = faces_1k.subset('test')
    acc = classifier_accuracy(back.attributes, test.images, test.attrs).mean().item()
    assert acc == pytest.approx(back.cards['attributes']['accuracy']['test_mean'], abs=1e-4)


def test_weights_are_plain_safetensors(trained):
    from safetensors import safe_open
    clf, _ = trained
    with safe_open(str(clf.folder/'attributes.safetensors'), framework='pt') as f:
        assert 'fc.weight' in f.keys()


def test_refusals(trained, faces_1k, tmp_path):
    clf, root = trained
    with pytest.raises(UserError, match=r'run `crvae classifiers --data avatars`'): load_classifiers(faces_1k, root=tmp_path/'empty')
    fewer = dict(data='avatars', attr_names=faces_1k.attr_names[:-2])
    with pytest.raises(UserError, match='another version'): load_classifiers(fewer, root=root)
    with pytest.raises(UserError, match='trained on 32 attributes, the data has 30'): load_classifiers(fewer, root=clf.folder)
    reordered = dict(data='avatars', attr_names=faces_1k.attr_names[::-1])
    with pytest.raises(UserError, match='another order'): load_classifiers(reordered, root=clf.folder)
    cel = load_celeba(make_fake_celeba(tmp_path/'celeba', n=20), size=32, out=tmp_path/'cc', workers=1, progress=False)
    with pytest.raises(UserError, match='no evaluation classifiers for celeba'): load_classifiers(cel, root=root)
    with pytest.raises(UserError, match='trained on avatars, not celeba'): clf.check_data(cel)


def test_damaged_or_foreign_files(trained, faces_1k, tmp_path):
    import shutil
    clf, _ = trained
    copy = tmp_path/'copy'; shutil.copytree(clf.folder, copy)
    (copy/'recognition.safetensors').write_bytes(b'\0' * 10)
    with pytest.raises(UserError, match='checksum'): load_classifiers(faces_1k, root=copy)
    shutil.copy(clf.folder/'recognition.safetensors', copy/'recognition.safetensors')
    card = json.loads((copy/'attributes.json').read_text()); card['format'] = 999
    (copy/'attributes.json').write_text(json.dumps(card))
    with pytest.raises(UserError, match='another crvae classifier format'): load_classifiers(faces_1k, root=copy)
    (copy/'attributes.json').write_text('{not json')
    with pytest.raises(UserError, match='not valid JSON'): load_classifiers(faces_1k, root=copy)


def test_epoch_choice_by_validation(faces_1k):
    cfg = dataclasses.replace(ClassifierTrainConfig.preset('tiny'), epochs=3, max_steps=0, batch_size=300)
    net = AttributeClassifier(faces_1k.n_attrs, AttributeClassifierConfig.preset('tiny'))
    log = train_classifier(net, faces_1k, faces_1k.attrs, faces_1k.split.long(), cfg, progress=False)
    accs = [h['valid_accuracy'] for h in log['history']]
    assert len(accs) == 3 and log['best_epoch'] == 1 + accs.index(max(accs))
    valid = faces_1k.subset('valid')
    assert classifier_accuracy(net, valid.images, valid.attrs).mean().item() == pytest.approx(max(accs), abs=1e-6)


def test_128px_data_mixes_in_64px_batches(faces_1k):
    "A 128 px cache trains with low_res_p: batches shrunk to 64 px and blown back up run through the same net."
    sub = faces_1k.subset(torch.arange(120))
    big = FaceData(F.interpolate(sub.images.float(), size=(128, 128), mode='bilinear').round().to(torch.uint8),
                   sub.attrs, sub.split, sub.attr_names, sub.name, sub.parts, sub.part_names, None, sub.manifest)
    cfg = dataclasses.replace(ClassifierTrainConfig.preset('tiny'), max_steps=4, low_res_p=1.0)
    net = AttributeClassifier(big.n_attrs, AttributeClassifierConfig.preset('tiny'))
    log = train_classifier(net, big, big.attrs, big.split.long(), cfg, progress=False)
    assert log['steps'] == min(4, int((big.split == 0).sum()) // 32)  # one epoch of full batches


def test_celeba_identity_head(tmp_path):
    cel = load_celeba(make_fake_celeba(tmp_path/'celeba', n=40), size=32, out=tmp_path/'cache', workers=1, progress=False)
    heads, labels = recognition_targets(cel)
    assert heads == {'identity': 5} and labels.shape == (40, 1) and labels.min() >= 0
    # identity-disjoint splits are redrawn per image
    disjoint = FaceData(cel.images, cel.attrs, cel.split, cel.attr_names, cel.name, identities=torch.where(cel.split == 0, 1, 2))
    split, note = recognition_split(disjoint, recognition_targets(disjoint)[1])
    assert 'identity-disjoint' in note and set(split.tolist()) <= {0, 1, 2}
    clf = train_classifiers(cel, out=tmp_path/'clf', preset='tiny', device='cpu', progress=False)
    assert clf.cards['recognition']['architecture']['heads'] == {'identity': 5}
    assert load_classifiers(cel, root=tmp_path/'clf').identity['dataset'] == 'celeba'
    no_ids = FaceData(cel.images, cel.attrs, cel.split, cel.attr_names, cel.name)
    with pytest.raises(UserError, match='identity_CelebA.txt'): recognition_targets(no_ids)


def test_cli(run_cli, faces_1k, tmp_path):
    code, out, err = run_cli('classifiers', '--n', 1000, '--preset', 'tiny', '--out', tmp_path, '--device', 'cpu', '--quiet',
                             '--set', 'max_steps=5', '--epochs', 2)
    assert code == 0, err
    assert 'attribute classifier' in out and 'recognition classifier' in out and '**average**' in out and 'images/s' in out
    clf = load_classifiers(faces_1k, root=tmp_path)
    assert clf.attr_names == faces_1k.attr_names and clf.cards['recognition']['training']['steps'] == 5
    assert clf.cards['attributes']['training']['config']['epochs'] == 2


@pytest.mark.parametrize('args, msg', [
    (['--epochs', '0'], '--epochs must be a positive integer'),
    (['--preset', 'huge'], 'unknown classifier preset'),
    (['--set', 'lr=fast'], 'expected a number'),
    (['--data', 'celeba'], '--root'),
    (['--data', 'avatar'], 'did you mean avatars'),
])
def test_cli_errors(run_cli, args, msg, tmp_path):
    code, out, err = run_cli('classifiers', '--n', 1000, '--out', tmp_path, '--quiet', *args)
    assert code == 2 and msg in err and err.count('\n') == 1
