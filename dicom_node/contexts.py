"""Presentation contexts: which SOP classes and transfer syntaxes the node accepts.

Image storage SOP classes are accepted only in transfer syntaxes Radscribe can
decode (pydicom with pylibjpeg, pyjpegls or GDCM), lossless first; any other
syntax is refused at association negotiation so the sender falls back to one
of these.  Non-image objects (SR, RTSTRUCT, presentation states, ...) carry no
pixel data to decode, so they are accepted in whatever syntax is offered.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import (
    JPEG2000,
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import sop_class
from pynetdicom.presentation import PresentationContext, build_context

VERIFICATION = UID("1.2.840.10008.1.1")

HTJ2K_LOSSLESS = UID("1.2.840.10008.1.2.4.201")
HTJ2K_LOSSLESS_RPCL = UID("1.2.840.10008.1.2.4.202")
HTJ2K = UID("1.2.840.10008.1.2.4.203")

# Accepted for images, in the order the node prefers them when a proposed
# context offers several: uncompressed, then lossless compression, then the
# lossy members of the JPEG-LS and JPEG 2000 families.  JPEG baseline/extended
# (lossy DCT; 8-bit baseline cannot hold CT values), the retired JPEG
# processes, MPEG/HEVC video and JPEG 2000 Part 2 are refused.
IMAGE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    JPEG2000Lossless,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEGLosslessSV1,
    JPEGLossless,
    RLELossless,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
)

# Storage classes that carry pixel data although their names lack "Image".
_PIXEL_STORAGE_CLASSES = frozenset(
    {
        "SegmentationStorage",
        "LabelMapSegmentationStorage",
        "HeightMapSegmentationStorage",
        "ParametricMapStorage",
        "RTDoseStorage",
        "EnhancedUSVolumeStorage",
        "OphthalmicThicknessMapStorage",
        "CornealTopographyMapStorage",
        "OphthlamicOpticalCoherenceTomographyBscanVolumeAnalysisStorage",
    }
)


def storage_sop_classes() -> dict[str, UID]:
    """Every storage SOP class pynetdicom knows, by keyword."""
    return {name: UID(uid) for name, uid in sop_class._STORAGE_CLASSES.items()}


def image_sop_classes() -> frozenset[UID]:
    return frozenset(
        uid
        for name, uid in storage_sop_classes().items()
        if "Image" in name or name in _PIXEL_STORAGE_CLASSES
    )


IMAGE_SOP_CLASSES = image_sop_classes()
NON_IMAGE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    *(
        uid
        for uid in AllTransferSyntaxes
        if uid not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    ),
)


def is_image_sop_class(uid: str) -> bool:
    return uid in IMAGE_SOP_CLASSES


def build_supported_contexts() -> list[PresentationContext]:
    """Verification plus every storage SOP class with its transfer syntaxes."""
    contexts = [build_context(VERIFICATION, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
    for uid in storage_sop_classes().values():
        image = uid in IMAGE_SOP_CLASSES
        syntaxes = IMAGE_TRANSFER_SYNTAXES if image else NON_IMAGE_TRANSFER_SYNTAXES
        contexts.append(build_context(uid, list(syntaxes)))
    return contexts


class ContextTable:
    """The supported contexts, built once and shared (read-only) by every association.

    pynetdicom deep-copies the server's contexts for each association, which for
    ~170 storage classes costs a noticeable part of a second; so the AE itself
    lists only Verification, and :meth:`for_offered` gives each association the
    contexts for what its requestor actually proposed.
    """

    def __init__(self) -> None:
        self._by_class = {cx.abstract_syntax: cx for cx in build_supported_contexts()}

    def for_offered(self, offered: Iterable[PresentationContext]) -> list[PresentationContext]:
        """Contexts for the proposed abstract syntaxes; non-image ones also take every
        offered transfer syntax (so a private or new syntax for an SR is accepted)."""
        chosen: dict[str, PresentationContext] = {}
        for proposal in offered:
            abstract = proposal.abstract_syntax
            context = self._by_class.get(abstract) if abstract is not None else None
            if abstract is None or context is None:
                continue
            if abstract in IMAGE_SOP_CLASSES or abstract == VERIFICATION:
                chosen.setdefault(abstract, context)
                continue
            base = chosen.get(abstract, context)
            known = set(base.transfer_syntax)
            extra = [ts for ts in proposal.transfer_syntax if ts not in known]
            if not extra:
                chosen.setdefault(abstract, context)
                continue
            try:
                chosen[abstract] = build_context(abstract, [*base.transfer_syntax, *extra])
            except ValueError:  # a malformed syntax UID: leave it to be refused
                chosen.setdefault(abstract, context)
        return list(chosen.values())
