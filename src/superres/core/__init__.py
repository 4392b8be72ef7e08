"""The lowest layer: image I/O, the one resampler, the metrics and LR synthesis.

Modules here import only numpy, torch and Pillow (and each other): every higher layer
(models, inference, evaluation, codec, training, apps) builds on them.
"""
