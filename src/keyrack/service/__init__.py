"""Use cases: each takes its collaborators as keyword arguments and commits once."""
