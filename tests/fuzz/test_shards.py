"""Synthetic shards (``bidrn synth`` output): malformed manifests, indices and archives are one line."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bidrn.apps.predict import samples_path
from bidrn.data.synthetic.dataset import SyntheticDataset
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_one_line

SHARD = "test-00000"


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A private copy of the packaged one-sample synthetic test set."""
    return Path(shutil.copytree(samples_path() / "synth-test", tmp_path / "synth"))


def edit_json(path: Path, change) -> None:
    document = json.loads(path.read_text())
    path.write_text(json.dumps(change(document)))


def edit_arrays(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    np.savez(path, **arrays)


def _manifest_list(root: Path) -> Path:
    edit_json(root / "manifest.json", lambda d: [d])
    return root / "manifest.json"


def _shards_climb_out(root: Path) -> Path:
    edit_json(root / "manifest.json", lambda d: {**d, "shards": ["../elsewhere"]})
    return root / "manifest.json"


def _shards_absolute(root: Path) -> Path:
    edit_json(root / "manifest.json", lambda d: {**d, "shards": ["/etc"]})
    return root / "manifest.json"


def _shards_not_a_list(root: Path) -> Path:
    edit_json(root / "manifest.json", lambda d: {**d, "shards": {"a": 1}})
    return root / "manifest.json"


def _index_list(root: Path) -> Path:
    edit_json(root / SHARD / "index.json", lambda d: [d])
    return root / SHARD / "index.json"


def _files_climb_out(root: Path) -> Path:
    edit_json(root / SHARD / "index.json", lambda d: {**d, "files": ["../../../etc/passwd"]})
    return root / SHARD / "index.json"


def _files_of_numbers(root: Path) -> Path:
    edit_json(root / SHARD / "index.json", lambda d: {**d, "files": [7]})
    return root / SHARD / "index.json"


def _index_not_json(root: Path) -> Path:
    (root / SHARD / "index.json").write_text("{files: [")
    return root / SHARD / "index.json"


def _truncated_npz(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    path.write_bytes(path.read_bytes()[:-200])
    return path


def _bad_crc_npz(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    np.savez(path, **arrays)  # stored, not compressed: a flipped byte is data, found by the CRC
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("joints_3d.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 150] ^= 0x55
    path.write_bytes(bytes(data))
    return path


def _nan_pose(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    edit_arrays(path, lambda a: a["body_pose"].__setitem__((0, 3), np.nan))
    return path


def _string_ids(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    edit_arrays(path, lambda a: a.__setitem__("ids", np.array(["zero"])))
    return path


def _wrong_shape(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    edit_arrays(path, lambda a: a.__setitem__("joints_2d", a["joints_2d"][:, :100]))
    return path


def _missing_key(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    edit_arrays(path, lambda a: a.pop("focal"))
    return path


def _npz_is_a_fifo(root: Path) -> Path:
    path = root / SHARD / "annotations.npz"
    path.unlink()
    os.mkfifo(path)
    return path


BAD = {
    "manifest is a list": (_manifest_list, "expected a JSON object, got a list"),
    "shard name climbs out": (_shards_climb_out, "folder names inside the dataset folder"),
    "shard name is absolute": (_shards_absolute, "folder names inside the dataset folder"),
    "shards not a list": (_shards_not_a_list, "'shards' must be a list"),
    "index is a list": (_index_list, "expected a JSON object, got a list"),
    "image name climbs out": (_files_climb_out, "image file names inside the shard folder"),
    "image names are numbers": (_files_of_numbers, "image file names inside the shard folder"),
    "index is not JSON": (_index_not_json, "not readable JSON"),
    "truncated archive": (_truncated_npz, "not a readable .npz archive"),
    "bad CRC": (_bad_crc_npz, "'joints_3d' is truncated or corrupt"),
    "NaN pose": (_nan_pose, "'body_pose' holds NaN or infinite values"),
    "string ids": (_string_ids, "'ids' has dtype"),
    "wrong shape": (_wrong_shape, "'joints_2d' has shape (1, 100, 2)"),
    "missing key": (_missing_key, "missing key 'focal'"),
    "annotations are a FIFO": (_npz_is_a_fifo, "not a regular file"),
}


@pytest.mark.parametrize("case", BAD)
def test_malformed_shards_are_one_line_errors(case, dataset):
    make, fragment = BAD[case]
    path = make(dataset)
    assert_one_line(lambda: SyntheticDataset(dataset), path, fragment, error=InputFileError)


def test_the_packaged_shard_reads(dataset):
    assert len(SyntheticDataset(dataset)) == 1


def test_an_empty_shard_is_valid(dataset):
    edit_json(dataset / SHARD / "index.json", lambda d: {**d, "ids": [], "files": [], "count": 0})
    edit_arrays(
        dataset / SHARD / "annotations.npz",
        lambda a: a.update({key: value[:0] for key, value in a.items()}),
    )
    assert len(SyntheticDataset(dataset)) == 0
