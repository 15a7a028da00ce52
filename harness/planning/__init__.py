"""Stage: recipe -> plan, pure: recipes, configs, backends, launches, the mmseg config a job trains.
May import: harness.store, harness.core (checked by lint-imports; see docs/architecture.md).
"""
