"""Real-dataset loaders (docs/design/data-formats.md §2), each producing :class:`PersonRecord` samples.

Training: :class:`Human36M` (3D), :class:`COCOWholeBody` and :class:`MPII` (2D, with NeuralAnnot
SMPL-X fits). Evaluation: :class:`EHF` and :class:`AGORA`. COCO-style files are indexed with
pycocotools (``pip install 'bidrn[datasets]'``).
"""

from bidrn.data.real.agora import AGORA
from bidrn.data.real.coco import COCOWholeBody
from bidrn.data.real.ehf import EHF
from bidrn.data.real.h36m import Human36M
from bidrn.data.real.mpii import MPII

__all__ = ["AGORA", "EHF", "MPII", "COCOWholeBody", "Human36M"]
