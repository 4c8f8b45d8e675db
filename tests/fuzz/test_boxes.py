"""Person boxes (``--boxes`` files and ``--bbox``): hostile JSON is one line, unusual valid JSON works."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from bidrn.apps.inputs import MAX_BOXES_BYTES, Frame, read_boxes
from bidrn.errors import InputFileError
from tests.fuzz.helpers import assert_cli_error, assert_one_line

BIG = "9" * 400
HUGE = "9" * 5000  # beyond Python's default 4300-digit limit for int()

BAD_DOCUMENTS = {
    "NaN score": ('[{"file_name": "a.jpg", "bbox": [1, 2, 3, 4], "score": NaN}]', "NaN is not a JSON number"),
    "Infinity in a box": ('[{"file_name": "a.jpg", "bbox": [1, 2, Infinity, 4]}]', "Infinity"),
    "1e400 in a box": ('[{"file_name": "a.jpg", "bbox": [1, 2, 1e400, 4]}]', "'bbox' must be four numbers"),
    "400-digit box": (f'[{{"file_name": "a.jpg", "bbox": [1, 2, {BIG}, 4]}}]', "'bbox' must be four numbers"),
    "400-digit score": (f'[{{"file_name": "a.jpg", "bbox": [1, 2, 3, 4], "score": {BIG}}}]', "'score'"),
    "5000-digit number": (f'[{{"file_name": "a.jpg", "bbox": [1, 2, {HUGE}, 4]}}]', "not valid JSON"),
    "deep nesting": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "boolean box": ('[{"file_name": "a.jpg", "bbox": [true, 2, 3, 4]}]', "'bbox' must be four numbers"),
    "string box": ('[{"file_name": "a.jpg", "bbox": "1,2,3,4"}]', "'bbox' must be four numbers"),
    "nested box": ('[{"file_name": "a.jpg", "bbox": [[1, 2], [3, 4]]}]', "'bbox' must be four numbers"),
    "list image id": ('[{"image_id": [1], "bbox": [1, 2, 3, 4]}]', "'image_id' must be a number or a string"),
    "object file name": ('[{"file_name": {"a": 1}, "bbox": [1, 2, 3, 4]}]', "'file_name' must be a string"),
    "not UTF-8": (b'[{"file_name": "\xff\xfe", "bbox": [1, 2, 3, 4]}]', "cannot read boxes file"),
    "COCO images not a list": ('{"images": 3, "annotations": []}', "needs 'images' and 'annotations'"),
    "COCO image without name": ('{"images": [{"id": 1}], "annotations": []}', "images[0]: needs 'id'"),
    "a bare string": ('"boxes"', "expected a list of detections"),
}


@pytest.mark.parametrize("case", BAD_DOCUMENTS)
def test_hostile_boxes_files_are_one_line_errors(case, tmp_path):
    content, fragment = BAD_DOCUMENTS[case]
    path = tmp_path / "boxes.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    message = assert_one_line(lambda: read_boxes(path), path, fragment, error=InputFileError)
    assert len(message) < 400  # a 5000-digit number is not echoed back


def test_boxes_file_above_the_size_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "boxes.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_BOXES_BYTES + 1)  # sparse: nothing is written or read
    assert_one_line(lambda: read_boxes(path), path, "above the 256 MiB limit", error=InputFileError)


def test_boxes_fifo_and_folder_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    assert_one_line(lambda: read_boxes(tmp_path / "fifo.json"), "not a regular file", error=InputFileError)
    (tmp_path / "dir.json").mkdir()
    assert_one_line(lambda: read_boxes(tmp_path / "dir.json"), "is a folder", error=InputFileError)


@pytest.mark.parametrize("case", ["NaN score", "deep nesting", "400-digit box"])
def test_hostile_boxes_through_predict_exit_non_zero_with_one_line(case, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(image)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(BAD_DOCUMENTS[case][0])
    argv = ("predict", image, "--out", tmp_path / "out", "--boxes", boxes)
    assert_cli_error(capsys, argv, boxes, BAD_DOCUMENTS[case][1])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("1,2,3", "--bbox"), ("1,2,nan,4", "--bbox"), ("1,2,inf,4", "--bbox"), (f"1,2,{BIG},4", "--bbox")],
)
def test_bad_single_box_option_names_the_flag(value, fragment, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(image)
    assert_cli_error(capsys, ("predict", image, "--out", tmp_path / "o", "--bbox", value), fragment)


@pytest.mark.parametrize(
    ("flag", "value"), [("--batch-size", "0"), ("--video-stride", "-1"), ("--min-score", "nan")]
)
def test_bad_numeric_options_of_predict(flag, value, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 40)).save(image)
    assert_cli_error(capsys, ("predict", image, "--out", tmp_path / "o", flag, value), flag)


def test_unusual_but_valid_boxes_files(tmp_path):
    document = [
        {"file_name": "ünïcode name.jpg", "bbox": [1, 2, 3, 4], "score": 1},  # int score, unicode name
        {"file_name": "ünïcode name.jpg", "bbox": [1, 2, 3, 4], "score": 1},  # duplicate: both kept
        {"image_id": "000042", "bbox": [0.5, 0.25, 1e-3, 1e3]},  # string id, tiny and huge sides
        {"image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 18},  # a dog: ignored
        {"image_id": 9007199254740993, "bbox": [1, 2, 3, 4]},  # beyond float precision, still an id
    ]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(document, ensure_ascii=False))
    table = read_boxes(path)

    def frame(name, index=None):
        return Frame(np.zeros((8, 8, 3), np.uint8), tmp_path / name, name.rsplit(".", 1)[0], index)

    assert [b.score for b in table.lookup(frame("ünïcode name.jpg"))] == [1.0, 1.0]
    assert table.lookup(frame("42.jpg"))[0].xywh == (0.5, 0.25, 1e-3, 1e3)
    assert table.lookup(frame("7.jpg")) == []
    assert len(table.lookup(frame("9007199254740993.png"))) == 1
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert len(read_boxes(empty)) == 0
