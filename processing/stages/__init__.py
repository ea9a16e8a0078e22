"""Processing stages, one shape each (see base.py): frames, embed, neardup, labels."""
