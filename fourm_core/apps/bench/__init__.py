"""``fourm bench``: quality (Table 1 shape) and performance benchmark runners."""
