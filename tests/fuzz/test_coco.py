"""COCO-style datasets (COCO-WholeBody, Human3.6M, EHF, AGORA): malformed fields and escaping paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bidrn.data.dataset import DataOptions
from bidrn.data.real import AGORA, EHF, COCOWholeBody, Human36M
from bidrn.data.real.ehf import read_ply_vertices
from bidrn.errors import InputFileError
from tests.data.test_real_loaders import make_agora, make_coco, make_h36m
from tests.fuzz.helpers import assert_one_line

COCO_ANNOTATIONS = Path("annotations") / "coco_wholebody_train_v1.0.json"


def edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def set_annotation(key, value):
    return lambda d: d["annotations"][0].__setitem__(key, value)


def set_image(key, value):
    return lambda d: d["images"][0].__setitem__(key, value)


COCO_CASES = {
    "box of strings": (set_annotation("bbox", ["a", "b", "c", "d"]), "malformed annotation"),
    "box of three": (set_annotation("bbox", [1, 2, 3]), "a box must be four finite numbers"),
    "box as text": (set_annotation("bbox", "10,12,80,100"), "malformed annotation"),
    "width as text": (set_image("width", "wide"), "image height and width must be numbers"),
    "negative height": (set_image("height", -5), "must be positive integers"),
    "fractional width": (set_image("width", 12.5), "must be positive integers"),
    "absolute file name": (set_image("file_name", "/etc/passwd"), "is not a relative path inside"),
    "file name climbing out": (
        set_image("file_name", "../../../etc/passwd"),
        "is not a relative path inside",
    ),
    "file name as number": (set_image("file_name", 12), "is not a relative path inside"),
    "keypoints as text": (set_annotation("keypoints", "x" * 51), "malformed annotation"),
    "keypoints of odd length": (set_annotation("keypoints", [1.0] * 50), "malformed annotation"),
    "annotation is a number": (lambda d: d["annotations"].__setitem__(0, 5), "malformed COCO index"),
    "annotation without id": (lambda d: d["annotations"][0].pop("id"), "missing key 'id'"),
    "images is an object": (lambda d: d.__setitem__("images", {"id": 0}), "'images' must be a list"),
}


@pytest.mark.parametrize("case", COCO_CASES)
def test_malformed_coco_wholebody_fields_are_one_line_errors(case, tmp_path):
    make_coco(tmp_path)
    change, fragment = COCO_CASES[case]
    edit(tmp_path / COCO_ANNOTATIONS, change)
    assert_one_line(
        lambda: COCOWholeBody(tmp_path, "train"), COCO_ANNOTATIONS.name, fragment, error=InputFileError
    )


@pytest.mark.parametrize("case", ["box of strings", "absolute file name", "keypoints as text"])
def test_with_skip_a_malformed_annotation_is_dropped_and_the_rest_loads(case, tmp_path):
    make_coco(tmp_path)
    edit(tmp_path / COCO_ANNOTATIONS, COCO_CASES[case][0])
    data = COCOWholeBody(tmp_path, "train", options=DataOptions(on_error="skip"))
    assert len(data) == 1 and data.skipped >= 1


def test_neuralannot_fits_of_the_wrong_shape(tmp_path):
    make_coco(tmp_path)
    fits = tmp_path / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json"
    fits.write_text("[1, 2]")
    assert_one_line(
        lambda: COCOWholeBody(tmp_path, "train"), fits, "expected a JSON object", error=InputFileError
    )
    make_coco(tmp_path)
    edit(fits, lambda d: d["1"]["cam_param"].__setitem__("focal", "far"))
    assert_one_line(lambda: COCOWholeBody(tmp_path, "train"), fits, "cam_param must hold two numbers")
    make_coco(tmp_path)
    edit(fits, lambda d: d["1"]["smplx_param"].__setitem__("body_pose", {"a": 1}))
    assert_one_line(lambda: COCOWholeBody(tmp_path, "train"), fits, "bad SMPL-X parameters")


def test_annotation_file_nested_too_deeply(tmp_path):
    make_coco(tmp_path)
    (tmp_path / COCO_ANNOTATIONS).write_text("[" * 100000 + "]" * 100000)
    assert_one_line(
        lambda: COCOWholeBody(tmp_path, "train"), COCO_ANNOTATIONS.name, "not a readable JSON file"
    )


H36M_DATA = Path("annotations") / "Human36M_subject1_data.json"
H36M_CAMERA = Path("annotations") / "Human36M_subject1_camera.json"


@pytest.mark.parametrize(
    ("file", "change", "fragment"),
    [
        (H36M_DATA, set_image("frame_idx", "0"), "must be integers"),
        (H36M_DATA, set_image("file_name", "/etc/hosts"), "is not a relative path inside"),
        (H36M_CAMERA, lambda d: d["1"].__setitem__("R", "identity"), "malformed annotation or camera"),
        (H36M_CAMERA, lambda d: d["1"].__setitem__("f", [1, 2, 3]), "malformed annotation or camera"),
    ],
    ids=["frame index as text", "absolute image name", "rotation as text", "focal of three"],
)
def test_malformed_human36m_fields(file, change, fragment, tmp_path):
    make_h36m(tmp_path)
    edit(tmp_path / file, change)
    assert_one_line(lambda: Human36M(tmp_path, subjects=(1,)), fragment, error=InputFileError)


def test_human36m_cameras_file_of_the_wrong_shape(tmp_path):
    make_h36m(tmp_path)
    (tmp_path / H36M_CAMERA).write_text("[]")
    assert_one_line(lambda: Human36M(tmp_path, subjects=(1,)), H36M_CAMERA.name, "expected a JSON object")


@pytest.mark.parametrize(
    ("key", "value"),
    [("smplx_param_path", "../../secret.json"), ("cam_param_path", "/etc/hosts"), ("person_id", "../../x")],
)
def test_agora_paths_are_confined_to_the_dataset(key, value, tmp_path):
    make_agora(tmp_path)
    edit(tmp_path / "AGORA_validation_SMPLX.json", set_annotation(key, value))
    assert_one_line(lambda: AGORA(tmp_path), "AGORA_validation_SMPLX.json", key, error=InputFileError)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("element vertex many", "malformed PLY file"),
        ("element vertex 3\nproperty quad x\nproperty float y\nproperty float z", "malformed PLY file"),
    ],
)
def test_malformed_ply_headers(header, fragment, tmp_path):
    path = tmp_path / "01_align.ply"
    path.write_bytes(f"ply\nformat binary_little_endian 1.0\n{header}\nend_header\n".encode() + b"\0" * 36)
    assert_one_line(lambda: read_ply_vertices(path), path, fragment, error=InputFileError)


def test_ehf_image_name_climbing_out(tmp_path):
    (tmp_path / "data").mkdir()
    document = {
        "images": [{"id": 0, "file_name": "../../01_img.jpg", "width": 160, "height": 120}],
        "annotations": [
            {"id": 0, "image_id": 0, "body_bbox": [30, 10, 60, 100], "lefthand_bbox": [1, 1, 2, 2],
             "righthand_bbox": [1, 1, 2, 2], "face_bbox": [1, 1, 2, 2]}
        ],
    }  # fmt: skip
    (tmp_path / "data" / "EHF.json").write_text(json.dumps(document))
    assert_one_line(lambda: EHF(tmp_path), "EHF.json", "is not a relative path inside", error=InputFileError)
