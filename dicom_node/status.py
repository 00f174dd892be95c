"""C-STORE and C-ECHO response statuses, named once.

Codes follow PS3.4 Annex B.2.3 (Storage Service Class): ``A7xx`` refused for
lack of resources, ``A9xx`` data set does not match the SOP class, ``Cxxx``
cannot understand.  The low byte names the reason so a PACS log shows which
check failed.  pynetdicom itself answers ``0xC210``/``0xC211`` when a data set
cannot be decoded or a handler raises; our codes use ``0xC1xx`` so the two are
told apart.
"""

from __future__ import annotations

import enum


class StoreStatus(enum.IntEnum):
    """The statuses Radscribe's storage SCP returns."""

    SUCCESS = 0x0000
    # General status (PS3.7 C.4): an internal failure such as a database error.
    PROCESSING_FAILURE = 0x0110
    # Refused: out of resources (free disk below the configured floor).
    OUT_OF_RESOURCES = 0xA700
    # Error: data set does not match SOP class.
    SOP_CLASS_MISMATCH = 0xA900
    MISSING_REQUIRED_UID = 0xA901
    SOP_INSTANCE_MISMATCH = 0xA902
    # Error: cannot understand.
    UNPARSEABLE_DATASET = 0xC100
    UNSAFE_UID = 0xC101
    INVALID_IMAGE_ATTRIBUTES = 0xC102
    PIXEL_DATA_LENGTH_MISMATCH = 0xC103

    @property
    def is_success(self) -> bool:
        return self is StoreStatus.SUCCESS

    @property
    def reason(self) -> str:
        """A short, stable label for logs and the failures-by-reason metric."""
        return self.name.lower()


ECHO_SUCCESS = 0x0000
