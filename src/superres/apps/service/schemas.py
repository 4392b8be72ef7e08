"""Typed bodies of the JSON answers; they are what the OpenAPI schema documents."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "ErrorBody",
    "Health",
    "Limits",
    "ModelInfo",
    "ModelList",
    "Progress",
    "Ready",
]


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="One line saying what was wrong")


class ModelInfo(BaseModel):
    """One model an upscale may name."""

    name: str
    scales: list[int] = Field(description="Integer scales it runs at")
    default: bool = Field(description="Whether an upscale without `model` runs it")


class Limits(BaseModel):
    """The limits requests are held to."""

    max_upload_bytes: int
    max_pixels: int = Field(description="Largest input width x height")
    max_outscale: float
    timeout_s: float
    max_queue: int
    workers: int


class ModelList(BaseModel):
    """``GET /v1/models``."""

    models: list[ModelInfo]
    codecs: list[str] = Field(description="Codecs /v1/compress accepts")
    restorers: list[str] = Field(description="Restoration models /v1/compress accepts")
    formats: list[str] = Field(description="Output formats /v1/upscale accepts")
    limits: Limits


class Health(BaseModel):
    """``GET /healthz``: the process answers."""

    status: str = "ok"


class Ready(BaseModel):
    """``GET /readyz``: whether new work is taken, and the pool's state."""

    ready: bool
    workers: int
    busy: int
    queued: int
    max_queue: int


class Progress(BaseModel):
    """``GET /v1/progress/{id}``: a job's state and tiles done so far."""

    state: str = Field(description="queued, running, done, failed or cancelled")
    done: int
    total: int
