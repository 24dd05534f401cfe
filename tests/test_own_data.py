"""Your own data: ``imagefolder:PATH`` (decoded lazily, exact pixels, torchvision's class order),
``--data-root`` on every data-reading subcommand, the dataset search order, and the error
messages a CLI user sees."""
import gzip
import json
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from divqat.cli import main
from divqat.data import (
    DATASETS,
    ImageDataset,
    LazyImages,
    dataset_info,
    load_dataset,
    load_images,
    load_tensors,
    resize_to,
)
from divqat.data.sources import search_dirs
from divqat.experiments.cells import CellCache

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["seven", "Zero", "eight", "two"]  # sorted: Zero, eight, seven, two (str order, as torchvision)


def _write_folder(root, rng, per_class, size=8, mode="L", sizes=None):
    """PNGs of random bytes in root/<class>/; returns {path: (pixels uint8 (C, H, W), class name)}."""
    written = {}
    for c in CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)] if sizes else (size, size)
            shape = (h, w) if mode == "L" else (h, w, 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            path = root / c / f"img{i:03d}.png"
            Image.fromarray(pixels, mode).save(path)
            written[path] = (pixels[None] if mode == "L" else pixels.transpose(2, 0, 1), c)
    (root / CLASSES[0] / "notes.txt").write_text("not an image")  # ignored, as by torchvision
    return written


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    train = _write_folder(root / "train", rng, per_class=6)
    test = _write_folder(root / "test", rng, per_class=2)
    return root, train, test


def test_pixels_labels_and_class_order_match_the_files(folder):
    root, train, test = folder
    name = f"imagefolder:{root}"
    order = sorted(CLASSES)
    for split, written in (("train", train), ("test", test)):
        x, y = load_tensors(name, split)
        assert x.dtype == torch.float32 and x.shape == (len(written), 1, 8, 8)
        files = sorted(written, key=lambda p: (order.index(written[p][1]), p.name))
        expected = torch.stack([torch.from_numpy(written[p][0]).double() / 255 for p in files])
        assert torch.equal(x.double(), expected.float().double())
        assert y.tolist() == [order.index(written[p][1]) for p in files]


def test_info_is_measured_from_the_training_images(folder):
    root, train, _ = folder
    info = dataset_info(f"imagefolder:{root}")
    pixels = np.concatenate([p.reshape(-1) for p, _ in train.values()]).astype(np.float64) / 255
    assert (info.num_classes, info.in_channels, info.image_size) == (4, 1, 8)
    assert info.mean == (round(pixels.mean(), 4),)
    assert info.std == (round(pixels.std(), 4),)
    assert info.crop_padding == 1 and not info.hflip
    assert info.name == f"imagefolder:{root.resolve()}"


def test_dataset_decodes_each_image_when_read(folder, tmp_path):
    root, _, _ = folder
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ds = load_dataset(f"imagefolder:{copy}", "train", augment=True)
    assert isinstance(ds, ImageDataset) and isinstance(ds.images, LazyImages)
    target = ds.images.files[3]
    new = np.full((8, 8), 200, dtype=np.uint8)
    Image.fromarray(new, "L").save(target)  # changed after the dataset was made
    ds.augment = False
    x, y = ds[3]
    assert torch.equal(x, torch.full((1, 8, 8), 200 / 255))
    images, labels = load_images(f"imagefolder:{copy}", "train", limit=5)
    assert isinstance(images, LazyImages) and len(images) == 5 and labels.shape == (5,)
    assert images[torch.tensor([3, 0])].shape == (2, 1, 8, 8) and torch.equal(images[3], x)


def test_rgb_and_mixed_sizes_are_resized_to_the_first_image(tmp_path):
    rng = np.random.default_rng(1)
    written = _write_folder(tmp_path, rng, per_class=2, mode="RGB", sizes=[(10, 12), (7, 5)])
    name = f"imagefolder:{tmp_path}"
    info = dataset_info(name)
    assert (info.in_channels, info.image_size) == (3, 12)
    x, _ = load_tensors(name, "train")
    assert x.shape == (8, 3, 12, 12) and 0 <= x.min() and x.max() <= 1
    grey = load_images(name, "train")[0].resized(1, 6)
    assert grey.shape == (8, 1, 6, 6)
    assert torch.allclose(grey[0], resize_to(x[0], 1, 6))
    assert len(written) == 8


def test_flat_folder_is_a_query_set_without_test_split(tmp_path):
    _write_folder(tmp_path, np.random.default_rng(2), per_class=1)
    x, y = load_tensors(f"imagefolder:{tmp_path}", "train")
    assert x.shape[0] == 4 and sorted(y.tolist()) == [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError, match="no test split.*train"):
        load_tensors(f"imagefolder:{tmp_path}", "test")


@pytest.mark.parametrize("case, error, match", [
    ("missing", FileNotFoundError, "no such folder"),
    ("one_class", ValueError, "at least 2 class folders"),
    ("unknown_test_class", ValueError, r"test classes \['extra'\]"),
    ("empty", ValueError, "no images"),
])
def test_bad_folders_name_the_problem(tmp_path, case, error, match):
    rng = np.random.default_rng(3)
    if case == "one_class":
        (tmp_path / "only").mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "only" / "a.png")
    elif case == "unknown_test_class":
        _write_folder(tmp_path / "train", rng, per_class=1)
        (tmp_path / "test" / "extra").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "test" / "extra" / "a.png")
    elif case == "empty":
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
    path = tmp_path / "nowhere" if case == "missing" else tmp_path
    with pytest.raises(error, match=match):
        load_tensors(f"imagefolder:{path}", "test" if case == "unknown_test_class" else "train")


def test_unknown_dataset_names_imagefolder():
    with pytest.raises(ValueError, match="imagefolder:PATH"):
        dataset_info("imagenet")
    assert "imagefolder" not in DATASETS


# -- the search order, --data-root, and what the CLI says ------------------------------------

def _write_idx(directory, n, fill):
    """Tiny IDX files of a Fashion-MNIST-shaped dataset: n images of constant value ``fill``."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        images = np.full((n, 28, 28), fill, dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + images.tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.tobytes())


def test_lookup_order_data_env_then_user_cache_then_system(tmp_path, monkeypatch):
    home, env = tmp_path / "home", tmp_path / "env"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DIVQAT_DATA", raising=False)
    cache = home / ".cache" / "divqat" / "fashion-mnist"
    dirs = search_dirs("fashion-mnist")
    assert dirs.index(cache) < dirs.index(search_dirs("fashion-mnist")[-1])  # the system dir is last
    assert str(dirs[-1]) == "/usr/share/datasets/fashion-mnist"
    _write_idx(cache, 12, 10)  # where scripts/fetch_fashion_mnist.sh --user puts it
    x, _ = load_tensors("fashion-mnist", "test")
    assert x.shape[0] == 12 and torch.all(x == 10 / 255)
    _write_idx(env / "fashion-mnist", 7, 20)
    monkeypatch.setenv("DIVQAT_DATA", str(env))
    assert search_dirs("fashion-mnist").index(env / "fashion-mnist") < search_dirs("fashion-mnist").index(cache)
    x, _ = load_tensors("fashion-mnist", "test")
    assert x.shape[0] == 7 and torch.all(x == 20 / 255)


def test_missing_dataset_error_speaks_of_data_root(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_tensors("cifar10", "test", root=tmp_path)
    message = str(err.value)
    assert "--data-root" in message and "root=" not in message


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    import divqat

    assert capsys.readouterr().out.strip() == f"divqat {divqat.__version__}"


@pytest.mark.parametrize("command", ["train", "attack", "evaluate", "experiment", "demo"])
def test_every_data_command_takes_data_root(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--data-root" in capsys.readouterr().out


def test_bad_data_root_exits_2(tmp_path, capsys):
    code = main(["train", "--dataset", "mnist", "--arch", "smallcnn", "--out", str(tmp_path / "o"),
                 "--data-root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--data-root" in err


def test_data_root_reaches_train_evaluate_and_attack(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DIVQAT_DATA", raising=False)
    root = tmp_path / "data"
    _write_idx(root / "fashion-mnist", 40, 30)
    run = tmp_path / "victim"
    assert main(["train", "--dataset", "fashion-mnist", "--arch", "smallcnn", "--epochs", "1", "--batch-size", "16",
                 "--no-progress", "--device", "cpu", "--data-root", str(root), "--out", str(run)]) == 0
    monkeypatch.delenv("DIVQAT_DATA", raising=False)  # what main set for the training run
    assert main(["evaluate", "--victim", str(run), "--data-root", str(root), "--no-progress"]) == 0
    assert "num_test: 40" in capsys.readouterr().out
    monkeypatch.delenv("DIVQAT_DATA", raising=False)
    code = main(["attack", "--victim", str(run), "--attack", "knockoff", "--queryset", "fashion-mnist",
                 "--budget", "41", "--epochs", "1", "--no-progress", "--data-root", str(root),
                 "--out", str(tmp_path / "a")])
    assert code == 2 and "41 exceeds the 40 images" in capsys.readouterr().err


def test_cli_train_and_attack_on_an_image_folder(folder, tmp_path, capsys):
    root, train, test = folder
    run = tmp_path / "victim"
    assert main(["train", "--dataset", f"imagefolder:{root}", "--arch", "smallcnn", "--epochs", "2",
                 "--batch-size", "8", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1
    out = tmp_path / "attack"
    cache = tmp_path / "cache"
    argv = ["attack", "--victim", str(run), "--attack", "knockoff", "--queryset", f"imagefolder:{root / 'train'}",
            "--budget", "20", "--epochs", "1", "--no-progress", "--cache-dir", str(cache)]
    assert main([*argv, "--out", str(out)]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["queries_used"] == 20 and first["fresh_queries"] == 20 and first["queryset"].startswith("imagefolder:")
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0  # the same files: answers from the cache
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["fresh_queries"] == 0
    code = main(["train", "--dataset", f"imagefolder:{tmp_path / 'none'}", "--arch", "smallcnn",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such folder" in err[0]


def test_experiment_toml_names_an_image_folder(folder, tmp_path, monkeypatch):
    root, _, _ = folder
    monkeypatch.chdir(root.parent)  # relative folder names, as a user writes them
    config = tmp_path / "mine.toml"
    config.write_text(f'''
name = "mine"
seeds = [0]
[data]
victim = "imagefolder:{root.name}"
queryset = "imagefolder:{root.name}/train"
[victim]
arch = "smallcnn"
epochs = 1
batch_size = 8
[quant]
epochs = 1
[[methods]]
name = "qat"
[[attacks]]
name = "knockoff"
budget = 16
epochs = 1
''')
    out = tmp_path / "run"
    assert main(["experiment", str(config), "--out", str(out), "--no-report", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["queries_used"] for c in results["cells"]] == [16]
    victim_dir = CellCache(out).victim_dir(results["cells"][0]["victim_key"])  # qat-seed0-<key>
    victim = json.loads((victim_dir / "config.json").read_text())
    assert victim["dataset"] == f"imagefolder:{root.resolve()}" and victim["meta"]["image_size"] == 8
