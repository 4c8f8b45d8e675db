"""Applications built on the library: what ``bidrn predict`` and ``bidrn demo`` do, as functions.

The layer above :mod:`bidrn.deploy` and below the command line (:mod:`bidrn.cli`,
:mod:`bidrn.commands`): it may use every library layer, and nothing in the library uses it.

* :mod:`bidrn.apps.inputs`: images, folders, videos and person boxes, checked before use;
* :mod:`bidrn.apps.outputs`: the output folder, whose names and summary survive concurrent runs;
* :mod:`bidrn.apps.predict`: model loading, person crops, batched inference, output files;
* :mod:`bidrn.apps.demo`: the bundled model on the bundled samples, with the synthetic sample's error.
"""
