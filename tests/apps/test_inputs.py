import json

import numpy as np
import pytest
from PIL import Image

from bidrn.apps.inputs import (
    MAX_MEGAPIXELS,
    MIN_IMAGE_SIDE,
    Frame,
    PersonBox,
    discover_inputs,
    iter_frames,
    parse_bbox,
    read_boxes,
    read_image_file,
    read_image_header,
)
from bidrn.errors import BidrnError, InputFileError
from tests.media import png_header_only, write_grey_clip


def write_image(path, height=48, width=40, value=0):
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


# -- discovery ---------------------------------------------------------------------------------------
def test_folders_expand_to_their_images_sorted_and_other_files_are_ignored(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.JPG", "c.txt"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    single = write_image(tmp_path / "z.png")
    sources, problems = discover_inputs([folder, single, tmp_path / "clip.mp4"])
    assert problems and "no such file" in str(problems[0])
    assert [s.path.name for s in sources] == ["a.JPG", "b.png", "z.png"]
    assert {s.kind for s in sources} == {"image"}


def test_empty_folder_missing_path_and_unknown_suffix_are_problems_naming_the_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    video = tmp_path / "clip.MP4"
    video.write_bytes(b"")
    sources, problems = discover_inputs([empty, tmp_path / "missing.jpg", notes, video])
    assert [s.kind for s in sources] == ["video"]
    messages = [str(p) for p in problems]
    assert messages[0].startswith(str(empty)) and "no images" in messages[0]
    assert messages[1].startswith(str(tmp_path / "missing.jpg")) and "no such file" in messages[1]
    assert messages[2].startswith(str(notes)) and "not an image or video" in messages[2]
    assert all("\n" not in m for m in messages)


# -- image checks ------------------------------------------------------------------------------------------
def test_huge_image_is_refused_from_its_header(tmp_path):
    path = png_header_only(tmp_path / "huge.png", 20000, 20000)
    with pytest.raises(InputFileError) as info:
        read_image_header(path)
    assert str(info.value).startswith(str(path))
    assert "megapixel" in str(info.value)
    with pytest.raises(InputFileError, match="megapixel"):
        read_image_file(path)


def test_limit_is_our_documented_one_not_pils(tmp_path):
    # 11000 x 10000 = 110 MP: below PIL's bomb error (179 MP) but above our 100 MP limit.
    path = png_header_only(tmp_path / "big.png", 11000, 10000)
    assert MAX_MEGAPIXELS * 1e6 < 11000 * 10000
    with pytest.raises(InputFileError, match="above the 100-megapixel limit"):
        read_image_header(path)
    # 9000 x 10000 = 90 MP is allowed through the header check (PIL would only warn).
    assert read_image_header(png_header_only(tmp_path / "ok.png", 9000, 10000)) == (10000, 9000)


def test_tiny_image_is_refused(tmp_path):
    path = write_image(tmp_path / "dot.png", 1, 1)
    with pytest.raises(InputFileError, match=f"too small \\(at least {MIN_IMAGE_SIDE} per side\\)"):
        read_image_file(path)


def test_text_file_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_text("this is not a JPEG")
    with pytest.raises(InputFileError, match="not an image") as info:
        read_image_file(path)
    assert str(info.value).startswith(str(path))


def test_truncated_jpeg_fails_on_decode_with_one_line(tmp_path):
    full = tmp_path / "full.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 160, 3), dtype=np.uint8)).save(full, quality=95)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert read_image_header(truncated) == (200, 160)  # the header is intact
    with pytest.raises(InputFileError, match="cannot decode image") as info:
        read_image_file(truncated)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(truncated))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=100)
    upright = read_image_file(path)
    assert upright.shape == (60, 40, 3)
    # The top-left marker of the stored pixels ends up at the top-right after a 90° clockwise turn.
    assert upright[2, -3, 0] > 200 and upright[2, 2, 0] < 50


def test_iter_frames_yields_problems_in_place_and_names_frames_after_their_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_image(tmp_path / "a" / "img.png", value=10)
    second = write_image(tmp_path / "b" / "img.png", value=20)
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    sources, _ = discover_inputs([first, bad, second])
    items = list(iter_frames(sources))
    assert isinstance(items[1], InputFileError)
    assert [items[0].name, items[2].name] == ["img", "img"]  # the output folder makes names unique
    assert items[0].image[5, 5, 0] == 10 and items[2].image[5, 5, 0] == 20


def test_video_frames_are_read_with_pyav(tmp_path):
    path = write_grey_clip(tmp_path / "clip.mp4", width=64, height=48, frames=5, step=40)
    sources, problems = discover_inputs([path])
    assert not problems and sources[0].kind == "video"
    frames = list(iter_frames(sources, video_stride=2))
    assert [f.frame_index for f in frames] == [0, 2, 4]
    assert [f.name for f in frames] == ["clip_000000", "clip_000002", "clip_000004"]
    assert frames[0].image.shape == (48, 64, 3)
    assert abs(int(frames[2].image[24, 32, 0]) - 160) < 12


def test_broken_video_is_an_input_problem(tmp_path):
    pytest.importorskip("av")
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all" * 10)
    sources, _ = discover_inputs([path])
    (item,) = list(iter_frames(sources))
    assert isinstance(item, InputFileError) and str(item).startswith(str(path))


# -- boxes -----------------------------------------------------------------------------------------------
def frame_for(path, index=None):
    return Frame(np.zeros((64, 64, 3), np.uint8), path, path.stem, index)


def test_parse_bbox():
    assert parse_bbox("1, 2.5,30,40") == PersonBox((1.0, 2.5, 30.0, 40.0))
    for text in ("1,2,3", "a,b,c,d", "0,0,0,10", "0,0,10,nan"):
        with pytest.raises(BidrnError, match=r"person box .*: expected four numbers"):
            parse_bbox(text)


def test_detection_list_matches_by_file_name_path_suffix_and_numeric_id(tmp_path):
    detections = [
        {"file_name": "a.jpg", "bbox": [1, 2, 30, 40], "score": 0.9, "category_id": 1},
        {"file_name": "a.jpg", "bbox": [5, 5, 20, 20], "score": 0.8},
        {"file_name": "a.jpg", "bbox": [5, 5, 20, 20], "score": 0.2},  # below min_score
        {"file_name": "a.jpg", "bbox": [9, 9, 9, 9], "score": 0.99, "category_id": 3},  # a car
        {"file_name": "sub/b.png", "bbox": [0, 0, 10, 10]},
        {"image_id": 123, "bbox": [3, 3, 10, 10], "score": 0.7},
    ]
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(detections))
    table = read_boxes(path, min_score=0.5)
    assert len(table) == 4
    boxes = table.lookup(frame_for(tmp_path / "a.jpg"))
    assert [b.xywh for b in boxes] == [(1, 2, 30, 40), (5, 5, 20, 20)] and boxes[0].score == 0.9
    assert table.lookup(frame_for(tmp_path / "data" / "sub" / "b.png"))[0].xywh == (0, 0, 10, 10)
    assert table.lookup(frame_for(tmp_path / "other" / "b.png")) == []
    assert table.lookup(frame_for(tmp_path / "000123.jpg"))[0].xywh == (3, 3, 10, 10)
    assert table.lookup(frame_for(tmp_path / "clip.mp4", index=123))[0].xywh == (3, 3, 10, 10)
    assert table.lookup(frame_for(tmp_path / "nothing.jpg")) == []


def test_coco_dictionary_resolves_image_ids_to_file_names(tmp_path):
    document = {
        "images": [{"id": 7, "file_name": "x.jpg"}, {"id": 8, "file_name": "y.jpg"}],
        "annotations": [
            {"image_id": 7, "bbox": [1, 1, 5, 5], "category_id": 1},
            {"image_id": 7, "bbox": [2, 2, 6, 6], "category_id": 1},
            {"image_id": 8, "bbox": [3, 3, 7, 7], "category_id": 1},
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    table = read_boxes(path)
    assert len(table.lookup(frame_for(tmp_path / "x.jpg"))) == 2
    assert table.lookup(frame_for(tmp_path / "y.jpg"))[0].xywh == (3, 3, 7, 7)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{]", "not valid JSON"),
        ('{"images": []}', "needs 'images' and 'annotations'"),
        ("42", "expected a list of detections"),
        ('[{"file_name": "a.jpg", "bbox": [1, 2, 3]}]', r"entry\[0\]: 'bbox' must be four numbers"),
        ('[{"file_name": "a.jpg", "bbox": [1, 2, -3, 4]}]', "must be positive"),
        ('[{"file_name": "a.jpg", "bbox": [1, 2, 3, 4], "score": "high"}]', "'score' must be a finite"),
        ('[{"bbox": [1, 2, 3, 4]}]', "needs 'image_id' or 'file_name'"),
        ('["a.jpg"]', "expected an object"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 2, "bbox": [1,1,1,1]}]}',
         "image_id 2 is not in 'images'"),
    ],
)  # fmt: skip
def test_malformed_boxes_files_name_the_file_and_the_entry(tmp_path, content, message):
    path = tmp_path / "boxes.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match=message) as info:
        read_boxes(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_boxes_file(tmp_path):
    with pytest.raises(InputFileError, match="no such boxes file"):
        read_boxes(tmp_path / "none.json")
