"""``fourm demo``: the end-to-end run on the embedded synthetic world and its HTML report."""
