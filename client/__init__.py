"""Site client: site config, manifest, images, splits, transforms, local training and evaluation."""
