"""Training, evaluation and the paper's experiments.

* :mod:`bidrn.engine.losses` — Hand4Whole's masked L1 loss terms (docs/design/pipeline.md §6);
* :mod:`bidrn.engine.trainer` — the training loop (Adam, step decay, AMP, DDP, exact resume);
* :mod:`bidrn.engine.checkpoint` — safetensors + JSON checkpoints;
* :mod:`bidrn.engine.metrics` — MPVPE / PA-MPVPE / PA-MPJPE with one batched Umeyama Procrustes;
* :mod:`bidrn.engine.evaluation` — the Table 1 columns over a dataset, sharded under ``torchrun``;
* :mod:`bidrn.engine.protocols`, :mod:`bidrn.engine.experiments` — the paper's tables re-run under
  named protocols;
* :mod:`bidrn.engine.complexity` — Params and OPs with the paper's convention.
"""
