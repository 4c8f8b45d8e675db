"""A random but structurally valid SMPL-X-format model file, for tests (no real SMPL-X data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bidrn.body.joint_sets import SMPLX_PARENTS

NUM_VERTICES = 10475
NUM_FACES = 20908
NUM_JOINTS = 55


def random_model_arrays(seed: int = 0, num_shape_columns: int = 20) -> dict[str, np.ndarray]:
    """Every key the official layer reads, filled with reproducible random values."""
    rng = np.random.default_rng(seed)
    V, F, J = NUM_VERTICES, NUM_FACES, NUM_JOINTS
    kintree = np.zeros((2, J), dtype=np.int64)
    kintree[0] = SMPLX_PARENTS
    kintree[0, 0] = 2**32 - 1
    kintree[1] = np.arange(J)
    regressor = rng.random((J, V)) * (rng.random((J, V)) < 0.002)
    regressor[np.arange(J), rng.integers(0, V, J)] += 1.0
    regressor /= regressor.sum(axis=1, keepdims=True)
    weights = rng.random((V, J)) ** 8
    weights /= weights.sum(axis=1, keepdims=True)
    q_left, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    q_right, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    return {
        "v_template": rng.normal(0.0, 0.3, (V, 3)),
        "f": rng.integers(0, V, (F, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0.0, 1e-2, (V, 3, num_shape_columns)),
        "posedirs": rng.normal(0.0, 1e-3, (V, 3, 9 * (J - 1))).astype(np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "hands_componentsl": q_left,
        "hands_componentsr": q_right,
        "hands_meanl": rng.normal(0.0, 0.3, 45),
        "hands_meanr": rng.normal(0.0, 0.3, 45),
        "lmk_faces_idx": rng.integers(0, F, 51),
        "lmk_bary_coords": rng.dirichlet(np.ones(3), 51),
        "dynamic_lmk_faces_idx": rng.integers(0, F, (79, 17)),
        "dynamic_lmk_bary_coords": rng.dirichlet(np.ones(3), (79, 17)),
    }


def write_random_model(path: Path, seed: int = 0, num_shape_columns: int = 20) -> Path:
    """Write :func:`random_model_arrays` as an uncompressed ``.npz`` and return its path."""
    np.savez(path, **random_model_arrays(seed, num_shape_columns))
    return path
