"""Datasets, datamodules, normalisation, histogram matching, augmentation, class balance."""
