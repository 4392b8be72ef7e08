"""Applications over the Python API: the command line (:mod:`.cli`)."""
