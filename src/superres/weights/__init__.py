"""Weight files: the checkpoint format (:mod:`.checkpoint`) and the shipped model zoo
(:mod:`.zoo`); the ``*.safetensors`` files beside them are the shipped weights."""
