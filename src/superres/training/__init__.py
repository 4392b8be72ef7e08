"""Training: config (:mod:`.config`), data (:mod:`.data`), the loop (:mod:`.loop`).

Nothing below this layer (core, models, weights, inference, evaluation, codec) imports it.
"""
