"""Datasets: the synthetic VOC-format set, preparation of the real VOC2012 + SBD aug set, checks.

Stage: the synthetic set, preparation of VOC2012 + SBD aug, checks, manifest and fingerprint. May
import: harness.planning, harness.store, harness.core (checked by lint-imports; see
docs/architecture.md).
"""
