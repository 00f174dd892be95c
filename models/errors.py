"""Typed errors for bad model input: each says what is wrong in words the pipeline can show.

Every error carries a stable ``code`` (for job failure reasons and the API) and a
human message.  None of them carries patient data; UIDs and paths are fine.
"""

from __future__ import annotations


class ModelInputError(ValueError):
    """The input cannot be turned into a trustworthy prediction."""

    code = "model_input_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NoImagesError(ModelInputError):
    """The folder holds no DICOM image (or NIfTI volume) at all."""

    code = "no_images"


class NotCTError(ModelInputError):
    """The images are not CT (MR, CR, SR, ...)."""

    code = "not_ct"


class LocalizerError(ModelInputError):
    """A scout/localizer/topogram, not a cross-sectional series."""

    code = "localizer"


class SecondaryCaptureError(ModelInputError):
    """Secondary capture or derived screen (dose report, summary), not diagnostic images."""

    code = "secondary_capture"


class TooFewSlicesError(ModelInputError):
    """Too few slices or too little coverage to hold a chest."""

    code = "too_few_slices"


class BrokenGeometryError(ModelInputError):
    """Missing or inconsistent positions, orientations or spacings."""

    code = "broken_geometry"


class UndecodablePixelsError(ModelInputError):
    """Pixel data that cannot be decoded (unsupported transfer syntax, truncated data)."""

    code = "undecodable_pixels"


class NotChestError(ModelInputError):
    """Geometry is fine but the series cannot cover a thorax (e.g. a head-only field of view)."""

    code = "not_chest"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not match this code."""

    code = "checkpoint_invalid"
