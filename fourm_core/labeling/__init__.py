"""Pseudo-labeling: the labeler contract (:mod:`.api`), reusable labelers (:mod:`.common`) and the runner."""
