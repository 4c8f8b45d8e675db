"""Cross-check against the official ``smplx`` package (optional test extra; skipped without it).

The ``smplx`` code is licensed for non-commercial research only; it is used here to test, never
imported by ``bidrn``.
"""

from __future__ import annotations

import pytest
import torch

from bidrn.body import load_body_model, standin_path

smplx = pytest.importorskip("smplx")

NUM_SETS = 20


def _parameter_sets(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    return dict(
        betas=rnd(NUM_SETS, 10),
        expression=rnd(NUM_SETS, 10),
        global_orient=rnd(NUM_SETS, 3, scale=0.8),
        body_pose=rnd(NUM_SETS, 63, scale=0.4),
        left_hand_pose=rnd(NUM_SETS, 45, scale=0.5),
        right_hand_pose=rnd(NUM_SETS, 45, scale=0.5),
        jaw_pose=rnd(NUM_SETS, 3, scale=0.3),
        leye_pose=rnd(NUM_SETS, 3, scale=0.2),
        reye_pose=rnd(NUM_SETS, 3, scale=0.2),
        transl=rnd(NUM_SETS, 3),
    )


@pytest.mark.parametrize("which", ["standin", "random"])
@pytest.mark.parametrize("flat_hand_mean", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_official_layer(which, flat_hand_mean, dtype, random_model_path, capsys):
    path = standin_path() if which == "standin" else random_model_path
    ours = load_body_model(path, flat_hand_mean=flat_hand_mean, dtype=dtype)
    official = smplx.create(
        str(path),
        model_type="smplx",
        use_pca=False,
        flat_hand_mean=flat_hand_mean,
        use_face_contour=True,
        num_betas=10,
        num_expression_coeffs=10,
        batch_size=NUM_SETS,
        dtype=dtype,
    )
    params = {k: v.to(dtype) for k, v in _parameter_sets(seed=7 + flat_hand_mean).items()}
    with torch.no_grad():
        a = ours(**params)
        b = official(**params)
    assert b.joints.shape == a.joints.shape == (NUM_SETS, 144, 3)
    assert (a.vertices - b.vertices).abs().max() < 1e-5
    assert (a.joints - b.joints).abs().max() < 1e-5
    capsys.readouterr()  # the official layer prints warnings about the 20-column shape space


def test_pca_hands_match_official_layer(random_model_path, capsys):
    ours = load_body_model(random_model_path, use_pca=True, num_pca_comps=12, dtype=torch.float64)
    official = smplx.create(
        str(random_model_path), model_type="smplx", use_pca=True, num_pca_comps=12,
        use_face_contour=True, batch_size=4, dtype=torch.float64,
    )  # fmt: skip
    params = {k: v[:4] for k, v in _parameter_sets(seed=11).items()}
    params["left_hand_pose"] = params["left_hand_pose"][:, :12]
    params["right_hand_pose"] = params["right_hand_pose"][:, :12]
    with torch.no_grad():
        a, b = ours(**params), official(**params)
    assert (a.vertices - b.vertices).abs().max() < 1e-5
    assert (a.joints - b.joints).abs().max() < 1e-5
    capsys.readouterr()
