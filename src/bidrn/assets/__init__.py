"""Files shipped inside the package: the stand-in body model, sample images and bundled weights."""
