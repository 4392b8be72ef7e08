"""Batch upscaling, evaluation and rate-distortion curves on Ray (the ``ray`` extra): the
driver plans and reports, a pool of Ray Data actors, each holding the model once, does the
work through the same code as the local engine (:func:`superres.api.run_jobs`,
:func:`superres.evaluation.evaluate_folder`, :func:`superres.codec.rd.measure_image`), so
outputs are byte-identical and scores equal.

::

    from superres import api
    from superres.apps.batch import Cluster, upscale_jobs

    jobs = api.plan_jobs(["photos/"], "big/", recursive=True)
    for result in upscale_jobs(jobs, "quality", scale=2, cluster=Cluster(workers=2)):
        print(result.job.target, result.status, result.error)

Importing this package does not import Ray; the functions do (:class:`RayMissingError`
when it is not installed).
"""

from superres.apps.batch.cluster import (
    INSTALL_HINT,
    Cluster,
    RayMissingError,
    import_ray,
    ray_installed,
    session,
)
from superres.apps.batch.evaluate import evaluate_folders
from superres.apps.batch.rd import rd_curves
from superres.apps.batch.upscale import upscale_jobs

__all__ = [
    "INSTALL_HINT",
    "Cluster",
    "RayMissingError",
    "evaluate_folders",
    "import_ray",
    "ray_installed",
    "rd_curves",
    "session",
    "upscale_jobs",
]
