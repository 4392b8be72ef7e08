"""``superres serve``: the HTTP API and the page (the ``serve`` extra)."""

from __future__ import annotations

import argparse

from superres.apps.cli.common import EXIT_OK, UsageError, positive_float, positive_int

__all__ = ["add_parser", "run"]

#: Settings fields -> the flags that set them (library messages name the field).
_FLAGS = {
    "max_queue": "--max-queue",
    "max_upload_mb": "--max-upload-mb",
    "max_pixels": "--max-pixels",
    "timeout": "--timeout",
    "workers": "--workers",
    "threads": "--threads",
    "tile": "--tile",
    "port": "--port",
    "default model": "--default-model",
}

EPILOG = """\
examples:
  superres serve                                   # http://127.0.0.1:8000/ (this machine only)
  superres serve --workers 2 --max-queue 8 --models fast quality
  superres serve --host 0.0.0.0 --port 8080 --max-upload-mb 20 --max-pixels 4000000

  curl -F image=@photo.jpg -F model=fast -F scale=4 http://127.0.0.1:8000/v1/upscale -o big.png
"""

DESCRIPTION = """\
Serve the REST API (/v1/upscale, /v1/compress, /v1/decompress, /v1/models, /healthz,
/readyz; OpenAPI at /docs) and the page at /. Inference runs in --workers threads behind a
queue of --max-queue jobs (429 when it is full); uploads over --max-upload-mb or images over
--max-pixels are refused (413) before they are decoded; a job over --timeout is cancelled
(504). Ctrl-C or SIGTERM refuses the queued jobs (503) and lets the running ones finish.
Put it behind a reverse proxy (TLS, authentication) before exposing it beyond localhost.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from superres.apps.service.settings import Settings

    d = Settings()
    se = subparsers.add_parser(
        "serve", help="serve the HTTP API and the web page",
        description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    se.add_argument(
        "--host",
        default=d.host,
        help=f"interface to listen on (default {d.host}: this machine only)",
    )
    se.add_argument(
        "--port", type=positive_int, default=d.port, help=f"TCP port (default {d.port})"
    )
    se.add_argument(
        "--workers",
        type=positive_int,
        default=d.workers,
        metavar="N",
        help=f"inference threads (default {d.workers}); torch's CPU threads are "
        "shared out among them",
    )
    se.add_argument(
        "--max-queue",
        type=positive_int,
        default=d.max_queue,
        metavar="Q",
        help=f"jobs that may wait for a worker (default {d.max_queue}; 429 beyond)",
    )
    se.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=d.max_upload_mb,
        metavar="M",
        help=f"largest upload in MiB (default {d.max_upload_mb:g})",
    )
    se.add_argument(
        "--max-pixels",
        type=positive_int,
        default=d.max_pixels,
        metavar="P",
        help=f"largest input width x height (default {d.max_pixels})",
    )
    se.add_argument(
        "--timeout",
        type=positive_float,
        default=d.timeout,
        metavar="S",
        help=f"seconds a job may take, queueing included (default {d.timeout:g})",
    )
    se.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help="model names offered (default: every shipped tier, bicubic, wiener); "
        "the first is the default unless --default-model",
    )
    se.add_argument(
        "--default-model",
        default=None,
        metavar="NAME",
        help="model an upscale without 'model' runs",
    )
    se.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch CPU threads per worker (default: the cores / --workers)",
    )
    se.add_argument(
        "--tile",
        type=positive_int,
        default=None,
        metavar="T",
        help="tile size in input pixels (default: automatic)",
    )
    se.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: automatic)")
    se.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    se.set_defaults(func=run)  # fmt: skip
    return se


def run(args: argparse.Namespace) -> int:
    try:
        from superres.apps.service import serve
    except ImportError as err:
        raise UsageError(
            f"the web service needs the serve extra (pip install 'superres[serve]'): {err}"
        ) from None
    from superres.apps.service.settings import Settings
    from superres.errors import ConfigError

    models = tuple(args.models or ())
    default = args.default_model or (models[0] if models else None)
    try:
        settings = Settings(
            host=args.host, port=args.port, workers=args.workers, max_queue=args.max_queue,
            max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels, timeout=args.timeout,
            models=models, default_model=default, threads=args.threads, tile=args.tile,
            device=args.device,
        )  # fmt: skip
    except ConfigError as err:
        text = str(err)
        for name, flag in _FLAGS.items():
            if text.startswith(f"{name} "):
                text = flag + text[len(name) :]
        raise UsageError(text) from None
    serve(settings, log_level=args.log_level)
    return EXIT_OK
