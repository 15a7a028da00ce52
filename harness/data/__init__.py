"""Datasets: the synthetic VOC-format set, preparation of the real VOC2012 + SBD aug set, checks."""
