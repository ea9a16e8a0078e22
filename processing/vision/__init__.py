"""Vision building blocks of the stages: frame image ops, model loading, the near-duplicate frame index."""
