"""Running a model over whole images: devices and threads, the tile plan, the tile loop,
pixel conversion, and the backends (torch; ONNX Runtime in :mod:`.onnx_backend`)."""
