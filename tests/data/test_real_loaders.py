"""Each real-dataset loader on a tiny fixture written in the dataset's own layout and key names."""

import json
import logging

import numpy as np
import pytest

from bidrn.body import joint_sets
from bidrn.data import geometry
from bidrn.data.dataset import DataOptions, SampleReadError
from bidrn.data.real import AGORA, EHF, MPII, COCOWholeBody, Human36M
from bidrn.data.real.h36m import H36M_JOINT_NAMES
from bidrn.errors import InputFileError

from .helpers import RigidBody, write_image

pytest.importorskip("pycocotools")

J = {name: i for i, name in enumerate(joint_sets.JOINT_NAMES)}


def dump(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# ----------------------------------------------------------------------------------------------
# Human3.6M
# ----------------------------------------------------------------------------------------------

H36M_R = geometry.axis_angle_to_matrix(np.array([0.1, 0.5, -0.05]))
H36M_T_MM = np.array([100.0, 200.0, 4500.0])
H36M_WORLD_PARAMS = {
    "root_pose": [0.2, -0.3, 0.1],
    "body_pose": [0.01] * 63,
    "shape": [0.5] * 10,
    "trans": [0.3, -0.1, 0.2],
}


def make_h36m(root, bad_key=False, outside=False, missing_image=False):
    rng = np.random.default_rng(0)
    folder = "s_01_act_02_subact_01_ca_01"
    images, anns, joints = [], [], {}
    for k, frame in enumerate([0, 3, 5]):
        name = f"{folder}/{folder}_{frame + 1:06d}.jpg"
        if not (missing_image and frame == 5):
            write_image(root / "images" / name, 100, 120, seed=k)
        images.append(
            {
                "id": k,
                "file_name": name,
                "width": 120,
                "height": 100,
                "subject": 1,
                "action_idx": 2,
                "subaction_idx": 1,
                "frame_idx": frame,
                "cam_idx": 1,
            }
        )
        bbox = [500.0, 500.0, 20.0, 30.0] if (outside and frame == 5) else [20.0, 10.0, 60.0, 80.0]
        anns.append({"id": 10 + k, "image_id": k, "bbox": bbox})
        joints[str(frame)] = (rng.normal(scale=300, size=(17, 3))).tolist()
    if bad_key:
        del anns[0]["bbox"]
    ann_dir = root / "annotations"
    dump(ann_dir / "Human36M_subject1_data.json", {"images": images, "annotations": anns})
    dump(
        ann_dir / "Human36M_subject1_camera.json",
        {"1": {"R": H36M_R.tolist(), "t": H36M_T_MM.tolist(), "f": [150.0, 150.0], "c": [60.0, 50.0]}},
    )
    dump(ann_dir / "Human36M_subject1_joint_3d.json", {"2": {"1": joints}})
    dump(
        ann_dir / "Human36M_subject1_SMPLX_NeuralAnnot.json",
        {"2": {"1": {"0": H36M_WORLD_PARAMS, "5": H36M_WORLD_PARAMS}}},
    )
    return joints


def test_h36m_count_joint_mapping_and_boxes(tmp_path):
    joints = make_h36m(tmp_path)
    data = Human36M(tmp_path, subjects=(1,))
    assert len(data) == 2  # frame 3 is not on the every-5th-frame grid
    record = data.records[0]
    world = np.asarray(joints["0"]) / 1000.0
    cam = world @ H36M_R.T + H36M_T_MM / 1000.0
    wrist = cam[H36M_JOINT_NAMES.index("L_Wrist")]
    np.testing.assert_allclose(record.joints_3d[12], wrist)  # 137-set index 12 is L_Wrist
    assert joint_sets.JOINT_NAMES[12] == "L_Wrist"
    np.testing.assert_allclose(record.joints_2d[12], wrist[:2] / wrist[2] * 150 + [60, 50])
    assert record.joints_2d_valid.sum() == 14  # Torso, Head, Head_top have no 137-set name
    assert not record.joints_2d_valid[J["L_Big_toe"]]
    sample = data[0]
    np.testing.assert_allclose(
        sample["meta_info"]["bbox"].numpy(), geometry.fit_box_aspect([20, 10, 60, 80]), atol=1e-4
    )
    assert float(sample["meta_info"]["is_3D"]) == 1.0
    # Ankle and wrist rotations and foot joints of the fits are not supervised (docs/design/pipeline.md §6).
    pose_valid = sample["meta_info"]["smplx_pose_valid"].view(53, 3)[:, 0]
    assert pose_valid[joint_sets.ROTATION_JOINT_NAMES.index("left_ankle")] == 0
    assert pose_valid[joint_sets.ROTATION_JOINT_NAMES.index("left_knee")] == 1
    assert pose_valid[joint_sets.ROT_LHAND_SLICE].sum() == 0  # fits without hands


def test_h36m_smplx_world_params_are_moved_to_the_camera(tmp_path):
    make_h36m(tmp_path)
    body = RigidBody()
    data = Human36M(tmp_path, subjects=(1,), body_model=body)
    record = data.record(0)
    import torch

    world = (
        body(
            betas=torch.tensor([H36M_WORLD_PARAMS["shape"]]),
            global_orient=torch.tensor([H36M_WORLD_PARAMS["root_pose"]]),
            transl=torch.tensor([H36M_WORLD_PARAMS["trans"]]),
        )
        .joints[0]
        .double()
        .numpy()
    )
    expected = world @ H36M_R.T + H36M_T_MM / 1000.0
    np.testing.assert_allclose(record.smplx_joints_3d, expected, atol=1e-5)
    root = geometry.axis_angle_to_matrix(record.smplx.root_pose)
    np.testing.assert_allclose(
        root, H36M_R @ geometry.axis_angle_to_matrix(H36M_WORLD_PARAMS["root_pose"]), atol=1e-9
    )


def test_h36m_missing_key_raises_or_skips(tmp_path, caplog):
    make_h36m(tmp_path, bad_key=True)
    with pytest.raises(
        InputFileError, match=r"Human36M_subject1_data.json: annotation 10: missing key 'bbox'"
    ):
        Human36M(tmp_path, subjects=(1,))
    with caplog.at_level(logging.WARNING, "bidrn.data"):
        data = Human36M(tmp_path, subjects=(1,), options=DataOptions(on_error="skip"))
    assert len(data) == 1 and data.skipped == 1
    assert "missing key 'bbox'" in caplog.text


def test_h36m_box_outside_image_raises_or_skips(tmp_path):
    make_h36m(tmp_path, outside=True)
    with pytest.raises(InputFileError, match="lies outside the 120x100 image"):
        Human36M(tmp_path, subjects=(1,))
    assert len(Human36M(tmp_path, subjects=(1,), options=DataOptions(on_error="skip"))) == 1


def test_h36m_missing_image_file_is_found_while_indexing(tmp_path):
    make_h36m(tmp_path, missing_image=True)
    with pytest.raises(InputFileError, match="image file is missing"):
        Human36M(tmp_path, subjects=(1,))
    assert len(Human36M(tmp_path, subjects=(1,), options=DataOptions(on_error="skip"))) == 1


# ----------------------------------------------------------------------------------------------
# COCO-WholeBody + NeuralAnnot
# ----------------------------------------------------------------------------------------------


def wholebody_ann(ann_id, image_id, rng, **changes):
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "num_keypoints": 17,
        "bbox": [10.0, 12.0, 80.0, 100.0],
        "area": 8000.0,
        "keypoints": np.column_stack([rng.uniform(10, 90, (17, 2)), np.full(17, 2)]).ravel().tolist(),
        "foot_kpts": np.column_stack([rng.uniform(10, 90, (6, 2)), np.full(6, 2)]).ravel().tolist(),
        "lefthand_kpts": np.column_stack([rng.uniform(10, 90, (21, 2)), np.full(21, 0.9)]).ravel().tolist(),
        "righthand_kpts": np.column_stack([rng.uniform(10, 90, (21, 2)), np.full(21, 0.9)]).ravel().tolist(),
        "face_kpts": np.column_stack([rng.uniform(10, 90, (68, 2)), np.full(68, 0.8)]).ravel().tolist(),
        "lefthand_box": [20.0, 30.0, 10.0, 12.0],
        "righthand_box": [60.0, 30.0, 10.0, 12.0],
        "face_box": [40.0, 12.0, 16.0, 16.0],
        "lefthand_valid": True,
        "righthand_valid": True,
        "face_valid": True,
    }
    ann.update(changes)
    return ann


def make_coco(root, corrupt=False):
    rng = np.random.default_rng(1)
    images = []
    for k in range(2):
        name = f"0000000000{k:02d}.jpg"
        images.append({"id": k, "file_name": name, "width": 120, "height": 140})
        write_image(root / "images" / "train2017" / name, 140, 120, seed=k)
    if corrupt:
        (root / "images" / "train2017" / images[1]["file_name"]).write_bytes(b"not a jpeg at all")
    anns = [
        wholebody_ann(1, 0, rng),
        wholebody_ann(2, 0, rng, iscrowd=1),
        wholebody_ann(3, 1, rng, num_keypoints=0),
        wholebody_ann(4, 1, rng, lefthand_valid=False),
    ]
    dump(root / "annotations" / "coco_wholebody_train_v1.0.json", {"images": images, "annotations": anns})
    fit = {
        "smplx_param": {
            "root_pose": [3.0, 0.0, 0.0],
            "body_pose": [0.0] * 63,
            "shape": [0.1] * 10,
            "trans": [0.0, 0.2, 6.0],
            "lhand_pose": [0.0] * 45,
            "rhand_pose": [0.0] * 45,
            "jaw_pose": [0.0] * 3,
            "expr": [0.0] * 10,
            "lhand_valid": False,
            "rhand_valid": True,
            "face_valid": True,
        },
        "cam_param": {"focal": [500.0, 500.0], "princpt": [60.0, 70.0]},
    }
    dump(root / "annotations" / "MSCOCO_train_SMPLX_all_NeuralAnnot.json", {"1": fit})
    return anns


def test_coco_wholebody_count_mapping_boxes_and_fits(tmp_path):
    anns = make_coco(tmp_path)
    data = COCOWholeBody(tmp_path, "train")
    assert len(data) == 2  # crowd and zero-keypoint annotations are skipped
    first, second = data.records
    kp = np.asarray(anns[0]["keypoints"]).reshape(17, 3)
    face = np.asarray(anns[0]["face_kpts"]).reshape(68, 3)
    lhand = np.asarray(anns[0]["lefthand_kpts"]).reshape(21, 3)
    np.testing.assert_allclose(first.joints_2d[J["L_Wrist"]], kp[9, :2])
    np.testing.assert_allclose(first.joints_2d[J["Pelvis"]], kp[11:13, :2].mean(axis=0))
    np.testing.assert_allclose(first.joints_2d[J["L_Thumb_1"]], lhand[1, :2])  # hand kpt 0 is the wrist
    np.testing.assert_allclose(first.joints_2d[J["L_Pinky_4"]], lhand[20, :2])
    np.testing.assert_allclose(first.joints_2d[J["Face_56"]], face[0, :2])  # contour first
    np.testing.assert_allclose(first.joints_2d[J["Face_5"]], face[17, :2])
    np.testing.assert_allclose(first.joints_2d[J["Face_18"]], kp[0, :2])  # nose tip from the body nose
    assert not first.joints_2d_valid[J["Face_1"]]  # jaw joint has no keypoint
    np.testing.assert_allclose(first.lhand_box, [20, 30, 30, 42])
    assert second.lhand_box is None and second.rhand_box is not None
    # Fits: left hand not valid -> its rotations and joints are masked; right hand kept.
    assert first.smplx is not None and second.smplx is None
    assert not first.smplx_pose_valid[joint_sets.ROT_LHAND_SLICE].any()
    assert first.smplx_pose_valid[joint_sets.ROT_RHAND_SLICE].all()
    assert not first.smplx_joints_valid[joint_sets.LHAND_SLICE].any()
    np.testing.assert_allclose(first.focal, [500, 500])
    sample = data[0]
    assert float(sample["meta_info"]["is_3D"]) == 0.0
    assert float(sample["meta_info"]["lhand_bbox_valid"]) == 1.0


def test_coco_corrupt_image_raises_clear_error_or_is_replaced(tmp_path, caplog):
    make_coco(tmp_path, corrupt=True)
    data = COCOWholeBody(tmp_path, "train")
    with pytest.raises(SampleReadError, match=r"000000000001.jpg: cannot decode image"):
        data[1]
    skipping = COCOWholeBody(tmp_path, "train", options=DataOptions(on_error="skip"))
    with caplog.at_level(logging.WARNING, "bidrn.data"):
        sample = skipping[1]
    assert "replaced by the next one" in caplog.text
    assert sample["inputs"]["img"].shape == (3, 512, 384)
    with pytest.raises(InputFileError, match="not a readable image"):
        COCOWholeBody(tmp_path, "train", options=DataOptions(check_files="header"))


def test_coco_missing_annotation_file_and_bad_json(tmp_path):
    with pytest.raises(InputFileError, match=r"coco_wholebody_train_v1\.0\.json: annotation file is missing"):
        COCOWholeBody(tmp_path, "train")
    dump(tmp_path / "annotations" / "coco_wholebody_train_v1.0.json", {"images": []})
    with pytest.raises(InputFileError, match="top level: missing key 'annotations'"):
        COCOWholeBody(tmp_path, "train")


# ----------------------------------------------------------------------------------------------
# MPII
# ----------------------------------------------------------------------------------------------


def test_mpii_count_mapping_and_fit_rules(tmp_path):
    rng = np.random.default_rng(2)
    write_image(tmp_path / "data" / "images" / "015601864.jpg", 90, 110)
    kps = np.column_stack([rng.uniform(5, 80, (16, 2)), np.ones(16)])
    kps[3, 2] = 0  # L_Hip not labelled
    anns = [
        {
            "id": 7,
            "image_id": 1,
            "bbox": [5.0, 5.0, 80.0, 80.0],
            "keypoints": kps.ravel().tolist(),
            "iscrowd": 0,
        },
        {"id": 8, "image_id": 1, "bbox": [5.0, 5.0, 80.0, 80.0], "keypoints": [0.0] * 48, "iscrowd": 0},
    ]
    images = [{"id": 1, "file_name": "images/015601864.jpg", "width": 110, "height": 90}]
    dump(tmp_path / "data" / "annotations" / "train.json", {"images": images, "annotations": anns})
    fit = {
        "smplx_param": {
            "root_pose": [3.0, 0, 0],
            "body_pose": [0.0] * 63,
            "shape": [0.0] * 10,
            "trans": [0, 0, 5.0],
        },
        "cam_param": {"focal": [400, 400], "princpt": [55, 45]},
    }
    dump(tmp_path / "data" / "annotations" / "MPII_train_SMPLX_NeuralAnnot.json", {"7": fit})
    data = MPII(tmp_path)
    assert len(data) == 1
    record = data.records[0]
    np.testing.assert_allclose(record.joints_2d[J["R_Ankle"]], kps[0, :2])
    np.testing.assert_allclose(record.joints_2d[J["L_Wrist"]], kps[15, :2])
    assert not record.joints_2d_valid[J["L_Hip"]] and record.joints_2d_valid[J["R_Hip"]]
    assert record.joints_2d_valid.sum() == 13  # no Thorax or Head_top in the 137 set; L_Hip unlabelled
    assert not record.smplx_pose_valid[joint_sets.ROTATION_JOINT_NAMES.index("right_wrist")]
    assert not record.smplx_joints_valid[J["R_Heel"]] and record.smplx_joints_valid[J["R_Knee"]]
    assert data[0]["targets"]["joint_img"].shape == (137, 3)


# ----------------------------------------------------------------------------------------------
# EHF
# ----------------------------------------------------------------------------------------------


def test_ehf_boxes_and_ground_truth_mesh(tmp_path):
    write_image(tmp_path / "data" / "01_img.jpg", 120, 160)
    vertices = np.random.default_rng(3).normal(size=(5, 3))
    header = "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in vertices)
    (tmp_path / "data" / "01_align.ply").write_text(
        header + "element face 0\nproperty list uchar int vertex_indices\nend_header\n" + body + "\n"
    )
    anns = [
        {
            "id": 0,
            "image_id": 0,
            "body_bbox": [30.0, 10.0, 60.0, 100.0],
            "lefthand_bbox": [30.0, 60.0, 10.0, 10.0],
            "righthand_bbox": [80.0, 60.0, 10.0, 10.0],
            "face_bbox": [50.0, 10.0, 20.0, 20.0],
        }
    ]
    dump(
        tmp_path / "data" / "EHF.json",
        {"images": [{"id": 0, "file_name": "01_img.jpg", "width": 160, "height": 120}], "annotations": anns},
    )
    data = EHF(tmp_path)
    assert len(data) == 1
    np.testing.assert_allclose(data.records[0].face_box, [50, 10, 70, 30])
    from bidrn.data.real.ehf import EHF_MESH_ROTATION

    np.testing.assert_allclose(data.gt_mesh(0), vertices @ EHF_MESH_ROTATION.T, atol=1e-5)
    sample = data[0]
    np.testing.assert_allclose(sample["targets"]["smplx_mesh_cam"].numpy(), data.gt_mesh(0), atol=1e-6)
    assert float(sample["meta_info"]["joint_valid"].sum()) == 0.0
    assert float(sample["meta_info"]["face_bbox_valid"]) == 1.0


# ----------------------------------------------------------------------------------------------
# AGORA
# ----------------------------------------------------------------------------------------------


def make_agora(root):
    stem = "ag_validationset_renderpeople_bfh_flowers_5_15_cam00_00000"
    image = {
        "id": 0,
        "file_name_3840x2160": f"images_3840x2160/validation/{stem}.png",
        "file_name_1280x720": f"images_1280x720/validation/{stem}_1280x720.png",
    }
    anns = []
    for pid in range(2):
        anns.append(
            {
                "id": pid,
                "image_id": 0,
                "person_id": pid,
                "smplx_param_path": f"smplx_params_cam/validation/{stem}/{pid}.json",
                "cam_param_path": f"cam_params/validation/{stem}.json",
                "gender": "neutral",
                "kid": False,
                "occlusion": 0.0,
                "is_valid": pid == 0,
                "age": "31-50",
                "ethnicity": "asian",
                "bbox": [1800.0, 600.0, 300.0, 900.0],
                "lhand_bbox": [1810.0, 1000.0, 60.0, 60.0],
                "rhand_bbox": [2030.0, 1000.0, 60.0, 60.0],
                "face_bbox": [1900.0, 610.0, 90.0, 90.0],
            }
        )
        params = {
            "global_orient": [3.1, 0, 0],
            "body_pose": [0.0] * 63,
            "jaw_pose": [0.0] * 3,
            "leye_pose": [0.0] * 3,
            "reye_pose": [0.0] * 3,
            "left_hand_pose": [0.0] * 45,
            "right_hand_pose": [0.0] * 45,
            "betas": [0.2] * 11,
            "expression": [0.0] * 10,
            "transl": [0.1, 0.3, 8.0],
        }
        dump(root / anns[-1]["smplx_param_path"], params)
    dump(
        root / f"cam_params/validation/{stem}.json", {"focal": [5000.0, 5000.0], "princpt": [1920.0, 1080.0]}
    )
    dump(root / "AGORA_validation_SMPLX.json", {"images": [image], "annotations": anns})
    zoom = 512 / (900 * 1.25)
    affine = np.array([[zoom, 0, 192 - zoom * 1950], [0, zoom, 256 - zoom * 1050]])
    crop = root / f"images_3840x2160/validation_crop/{stem}_person_id_0"
    write_image(crop.with_suffix(".png"), 512, 384)
    dump(
        crop.with_suffix(".json"),
        {
            "bbox_orig": [1800, 600, 300, 900],
            "affine_mat": affine.tolist(),
            "resized_height": 512,
            "resized_width": 384,
        },
    )
    return affine


def test_agora_crop_mode_intrinsics_boxes_and_joints(tmp_path):
    affine = make_agora(tmp_path)
    data = AGORA(tmp_path, "validation", body_model=RigidBody())
    assert len(data) == 1  # is_valid == False skipped
    record = data.records[0]
    np.testing.assert_allclose(record.focal, 5000 * np.diag(affine))
    np.testing.assert_allclose(record.princpt, affine[:, :2] @ [1920, 1080] + affine[:, 2])
    np.testing.assert_allclose(record.lhand_box[:2], affine[:, :2] @ [1810, 1000] + affine[:, 2])
    np.testing.assert_allclose(record.bbox, [0, 0, 384, 512])
    assert record.smplx.shape.shape == (10,)
    full = data.record(0)
    assert full.joints_2d_valid.all() and full.is_3d
    np.testing.assert_allclose(full.joints_2d, geometry.project(full.joints_3d, full.focal, full.princpt))
    sample = data[0]
    assert float(sample["meta_info"]["joint_valid"].sum()) == 137.0
    assert float(sample["meta_info"]["is_3D"]) == 1.0


def test_agora_missing_parameter_key(tmp_path):
    make_agora(tmp_path)
    path = next((tmp_path / "smplx_params_cam").rglob("0.json"))
    raw = json.loads(path.read_text())
    del raw["transl"]
    path.write_text(json.dumps(raw))
    with pytest.raises(InputFileError, match=r"0.json: annotation 0: missing key 'transl'"):
        AGORA(tmp_path, "validation")
    assert len(AGORA(tmp_path, "validation", options=DataOptions(on_error="skip"))) == 0


def test_dataloader_workers_skip_or_report_a_corrupt_image(tmp_path):
    from torch.utils.data import DataLoader

    make_coco(tmp_path, corrupt=True)
    skipping = COCOWholeBody(tmp_path, "train", options=DataOptions(on_error="skip"))
    batches = list(DataLoader(skipping, batch_size=2, num_workers=1))
    assert len(batches) == 1 and batches[0]["inputs"]["img"].shape == (2, 3, 512, 384)
    strict = COCOWholeBody(tmp_path, "train")
    with pytest.raises(SampleReadError, match=r"000000000001\.jpg: cannot decode image"):
        list(DataLoader(strict, batch_size=2, num_workers=1))


def test_h36m_camera_frame_fit_matches_the_moved_world_body_with_the_standin(tmp_path):
    import torch

    body_module = pytest.importorskip("bidrn.body")
    if not body_module.standin_path().is_file():
        pytest.skip("the embedded stand-in body model is not available")
    body = body_module.load_body_model()
    make_h36m(tmp_path)
    record = Human36M(tmp_path, subjects=(1,), body_model=body).record(0)

    def t(values):
        return torch.tensor([values], dtype=torch.float32)

    world = body(
        betas=t(H36M_WORLD_PARAMS["shape"]),
        global_orient=t(H36M_WORLD_PARAMS["root_pose"]),
        body_pose=t(H36M_WORLD_PARAMS["body_pose"]),
        transl=t(H36M_WORLD_PARAMS["trans"]),
    )
    expected = world.supervision_joints[0].double().numpy() @ H36M_R.T + H36M_T_MM / 1000.0
    # SMPL-X picks its 17 face-contour landmarks by the head's yaw in the evaluation frame, so only
    # those may differ between "fit in the camera" and "world body moved to the camera".
    rigid = np.ones(137, dtype=bool)
    rigid[[J[f"Face_{k}"] for k in range(56, 73)]] = False
    np.testing.assert_allclose(record.smplx_joints_3d[rigid], expected[rigid], atol=2e-5)


def test_agora_low_resolution_mode_rescales_boxes_and_intrinsics(tmp_path):
    make_agora(tmp_path)
    stem = "ag_validationset_renderpeople_bfh_flowers_5_15_cam00_00000"
    write_image(tmp_path / f"images_1280x720/validation/{stem}_1280x720.png", 720, 1280)
    data = AGORA(tmp_path, "validation", resolution="1280x720")
    record = data.records[0]
    assert record.image_size == (720, 1280)
    np.testing.assert_allclose(record.focal, [5000 / 3, 5000 / 3])
    np.testing.assert_allclose(record.princpt, [640, 360])
    np.testing.assert_allclose(record.bbox, [600, 200, 100, 300])
    np.testing.assert_allclose(record.face_box, [1900 / 3, 610 / 3, 1990 / 3, 700 / 3])
    assert data[0]["inputs"]["img"].shape == (3, 512, 384)
