"""Whole-body training and evaluation data.

Every source — the synthetic data rendered from the body model, Human3.6M, COCO-WholeBody with
NeuralAnnot fits, MPII, EHF and AGORA — is read into the same
:class:`~bidrn.data.sample.PersonRecord` and served by a :class:`~bidrn.data.dataset.RecordDataset`
whose items are Hand4Whole's ``inputs`` / ``targets`` / ``meta_info`` dictionaries (keys and
shapes: :mod:`bidrn.data.targets`). :class:`~bidrn.data.mixing.GroupResampledDataset` mixes
datasets the way the paper's training does.
"""
