"""Synthetic whole-body data rendered from the body model (the project's embedded default).

:func:`~bidrn.data.synthetic.generate.generate` (``bidrn synth``) writes sharded samples;
:class:`~bidrn.data.synthetic.dataset.SyntheticDataset` reads them back as training samples.
"""
