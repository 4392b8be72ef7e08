"""The model zoo: registry, shared layers, descriptor and one module per architecture family.

>>> from superres.models import create_model, list_models
>>> net = create_model("edsr_baseline", scale=2, n_blocks=4)
>>> net.hparams["n_blocks"], net.tiling
(4, 'exact')
"""

from superres.models import (  # noqa: F401
    bicubic,
    burst,
    edsr,
    espcn,
    fsrcnn,
    lafn,
    plainsr,
    rcan,
    reparam,
    srcnn,
    vdsr,
    wiener,
)
from superres.models.descriptor import SRModel
from superres.models.flops import count_flops, flops_per_output_pixel
from superres.models.registry import (
    ModelSpec,
    create_model,
    get_model_spec,
    list_models,
    register_model,
)

__all__ = [
    "ModelSpec",
    "SRModel",
    "count_flops",
    "create_model",
    "flops_per_output_pixel",
    "get_model_spec",
    "list_models",
    "register_model",
]
