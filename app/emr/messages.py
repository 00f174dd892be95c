"""HL7 v2.5.1 message builders: the one place Radscribe writes HL7.

The listener's ACKs, the outbox's ORU^R01 results, the synthetic-study
generator's ADT and ORM messages and the tests all build their messages here.
Every value is set on a leaf of the hl7apy element tree as a base data type,
so hl7apy escapes the delimiters (``| ^ ~ \\ &``) in patient names and
free text; a builder never pastes user text into ER7 by hand.

Builders return ER7 text with ``\\r`` segment separators.  ADT, ACK and
ORU messages pass hl7apy's STRICT validation as whole messages; ORM^O01 and
OMI^O23 are checked segment by segment at STRICT level, because hl7apy models
the ORM^O01 order-detail choice group as a sequence that no real order fills.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Element, Segment
from hl7apy.parser import parse_message
from hl7apy.v2_5_1 import TX as _TEXT_TYPE

HL7_VERSION = "2.5.1"
SEGMENT_SEPARATOR = "\r"
CHARACTER_SET_UTF8 = "UNICODE UTF-8"
SENDING_APPLICATION = "RADSCRIBE"
SENDING_FACILITY = "RADIOLOGY"
RECEIVING_APPLICATION = "EMR"
RECEIVING_FACILITY = "HOSPITAL"
# MSH-15/16 left empty: original acknowledgment mode (one AA/AE/AR per message).
IDENTIFIER_TYPE_MRN = "MR"
DIAGNOSTIC_SERVICE_CT = "CT"
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"

PROCESSING_IDS = frozenset({"P", "T", "D"})
SEX_CODES = frozenset({"M", "F", "O", "U"})
PRIORITY_CODES = frozenset({"S", "R"})
ORDER_CONTROL_CODES = frozenset({"NW", "XO", "CA", "DC"})
RESULT_STATUS_CODES = frozenset({"P", "F", "C"})
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

# Report sections as LOINC radiology report section codes; other names get a local code.
SECTION_CODES: dict[str, tuple[str, str, str]] = {
    "indication": ("18785-6", "Radiology Reason for study", "LN"),
    "clinical_history": ("55752-0", "Clinical information", "LN"),
    "technique": ("55111-9", "Current imaging procedure descriptions", "LN"),
    "comparison": ("18834-2", "Radiology Comparison study", "LN"),
    "findings": ("59776-5", "Procedure Findings", "LN"),
    "impression": ("19005-8", "Radiology Impression", "LN"),
    "recommendations": ("18783-1", "Radiology Study recommendation", "LN"),
}
LOCAL_CODING_SYSTEM = "L"

# HL7 table 0357 (message error condition codes) used in ERR-3.
ERROR_SEGMENT_SEQUENCE = "100"
ERROR_REQUIRED_FIELD_MISSING = "101"
ERROR_DATA_TYPE = "102"
ERROR_TABLE_VALUE_NOT_FOUND = "103"
ERROR_UNSUPPORTED_MESSAGE_TYPE = "200"
ERROR_UNSUPPORTED_EVENT_CODE = "201"
ERROR_UNSUPPORTED_VERSION = "203"
ERROR_UNKNOWN_KEY = "204"
ERROR_APPLICATION_INTERNAL = "207"
ERROR_TEXT_MAX = 200


class MessageBuildError(ValueError):
    """A builder was given values HL7 cannot carry (bad code, empty identifier)."""


@dataclass(frozen=True)
class PatientInfo:
    mrn: str
    issuer: str
    family_name: str
    given_name: str
    birth_date: str  # YYYYMMDD
    sex: str  # "M" / "F" / "O" / "U"


@dataclass(frozen=True)
class OrderInfo:
    accession_number: str
    accession_issuer: str
    placer_order_number: str
    procedure_code: str
    procedure_text: str
    priority: str  # HL7 "S" (stat) or "R" (routine)
    reason_for_exam: str | None
    clinical_history: str | None
    ordering_provider: str | None
    order_control: str = "NW"


@dataclass(frozen=True)
class Interpreter:
    """A radiologist named in OBR-32/OBR-33 (NDL: ID & family & given)."""

    id: str
    family_name: str
    given_name: str = ""


@dataclass(frozen=True)
class ReportSection:
    """One section of report text; ``name`` is a key of SECTION_CODES or any title."""

    name: str
    text: str


@dataclass(frozen=True)
class ResultInfo:
    """A human-signed report as the ORU^R01 carries it."""

    result_status: str  # OBR-25 and every OBX-11: P, F or C
    sections: tuple[ReportSection, ...]
    principal_interpreter: Interpreter  # OBR-32: who signed (the attending when co-signed)
    assistant_interpreter: Interpreter | None  # OBR-33: who wrote it (a resident)
    signed_at: datetime
    observation_time: datetime | None = None
    model_version: str | None = None  # the AI model behind the draft, when there was one
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class AckInfo:
    """What an ACK answers: the header fields of the message it acknowledges."""

    control_id: str
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger_event: str = ""
    version: str = HL7_VERSION
    processing_id: str = "P"


# --------------------------------------------------------------------------- helpers


def format_timestamp(when: datetime | None) -> str:
    """HL7 DTM in UTC, to the second."""
    moment = when or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(TIMESTAMP_FORMAT)


def escape(value: str) -> str:
    """ER7-escape free text with hl7apy (``|`` to ``\\F\\``, ``^`` to ``\\S\\`` ...)."""
    return str(_TEXT_TYPE(value).to_er7())


def _set(element: Element, path: str, value: str | None) -> None:
    """Set the leaf at a dotted path (``pid_5.xpn_1.fn_1``) to escaped text.

    hl7apy escapes the text, then parses it as the leaf's own data type, so
    a delimiter in a name or a free-text line can never open a new field.
    """
    if value is None or value == "":
        return
    target = element
    parts = path.split(".")
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], escape(value))


def _require(value: str, what: str) -> str:
    if not value or not value.strip():
        raise MessageBuildError(f"{what} must not be empty")
    return value


def _choice(value: str, allowed: frozenset[str], what: str) -> str:
    if value not in allowed:
        raise MessageBuildError(f"{what} is {value!r}; expected one of {sorted(allowed)}")
    return value


def _msh(
    *,
    message_code: str,
    trigger_event: str,
    structure: str,
    control_id: str,
    processing_id: str,
    when: datetime | None,
    sending_application: str = SENDING_APPLICATION,
    sending_facility: str = SENDING_FACILITY,
    receiving_application: str = RECEIVING_APPLICATION,
    receiving_facility: str = RECEIVING_FACILITY,
    version: str = HL7_VERSION,
    accept_ack: str | None = None,
    application_ack: str | None = None,
) -> Segment:
    _require(control_id, "control ID (MSH-10)")
    _choice(processing_id, PROCESSING_IDS, "processing ID (MSH-11)")
    msh = Segment("MSH", version=HL7_VERSION)
    msh.msh_1 = "|"
    msh.msh_2 = "^~\\&"
    _set(msh, "msh_3.hd_1", sending_application)
    _set(msh, "msh_4.hd_1", sending_facility)
    _set(msh, "msh_5.hd_1", receiving_application)
    _set(msh, "msh_6.hd_1", receiving_facility)
    _set(msh, "msh_7.ts_1", format_timestamp(when))
    _set(msh, "msh_9.msg_1", message_code)
    _set(msh, "msh_9.msg_2", trigger_event)
    _set(msh, "msh_9.msg_3", structure)
    _set(msh, "msh_10", control_id)
    _set(msh, "msh_11.pt_1", processing_id)
    _set(msh, "msh_12.vid_1", version)
    _set(msh, "msh_15", accept_ack)
    _set(msh, "msh_16", application_ack)
    _set(msh, "msh_18", CHARACTER_SET_UTF8)
    return msh


def _pid(patient: PatientInfo) -> Segment:
    _require(patient.mrn, "patient MRN (PID-3)")
    _choice(patient.sex, SEX_CODES, "sex (PID-8)")
    if patient.birth_date and (len(patient.birth_date) != 8 or not patient.birth_date.isdigit()):
        raise MessageBuildError(f"birth date {patient.birth_date!r} is not YYYYMMDD")
    pid = Segment("PID", version=HL7_VERSION)
    _set(pid, "pid_1", "1")
    _set(pid, "pid_3.cx_1", patient.mrn)
    _set(pid, "pid_3.cx_4.hd_1", patient.issuer)
    _set(pid, "pid_3.cx_5", IDENTIFIER_TYPE_MRN)
    _set(pid, "pid_5.xpn_1.fn_1", patient.family_name)
    _set(pid, "pid_5.xpn_2", patient.given_name)
    _set(pid, "pid_7.ts_1", patient.birth_date)
    _set(pid, "pid_8", patient.sex)
    return pid


def _provider(element: Element, path: str, provider: str | None) -> None:
    """An ordering provider as XCN: ``ID^FAMILY^GIVEN`` text is split, anything else is a name."""
    if not provider:
        return
    parts = provider.split("^")
    if len(parts) >= 2:
        _set(element, f"{path}.xcn_1", parts[0])
        _set(element, f"{path}.xcn_2.fn_1", parts[1])
        if len(parts) >= 3:
            _set(element, f"{path}.xcn_3", parts[2])
    else:
        _set(element, f"{path}.xcn_2.fn_1", provider)


def _order_segments(order: OrderInfo, *, when: datetime | None) -> list[Segment]:
    _require(order.accession_number, "accession number")
    _require(order.placer_order_number, "placer order number")
    _choice(order.priority, PRIORITY_CODES, "priority")
    _choice(order.order_control, ORDER_CONTROL_CODES, "order control (ORC-1)")
    orc = Segment("ORC", version=HL7_VERSION)
    _set(orc, "orc_1", order.order_control)
    _set(orc, "orc_2.ei_1", order.placer_order_number)
    _set(orc, "orc_3.ei_1", order.accession_number)
    _set(orc, "orc_3.ei_2", order.accession_issuer)
    _set(orc, "orc_5", "CA" if order.order_control in ("CA", "DC") else "SC")
    _set(orc, "orc_7.tq_6", order.priority)
    _set(orc, "orc_9.ts_1", format_timestamp(when))
    _provider(orc, "orc_12", order.ordering_provider)

    obr = Segment("OBR", version=HL7_VERSION)
    _set(obr, "obr_1", "1")
    _set(obr, "obr_2.ei_1", order.placer_order_number)
    _set(obr, "obr_3.ei_1", order.accession_number)
    _set(obr, "obr_3.ei_2", order.accession_issuer)
    _set(obr, "obr_4.ce_1", order.procedure_code)
    _set(obr, "obr_4.ce_2", order.procedure_text)
    _set(obr, "obr_4.ce_3", LOCAL_CODING_SYSTEM if order.procedure_code else None)
    _set(obr, "obr_5", order.priority)
    _set(obr, "obr_13", order.clinical_history)
    _provider(obr, "obr_16", order.ordering_provider)
    _set(obr, "obr_18", order.accession_number)
    _set(obr, "obr_24", DIAGNOSTIC_SERVICE_CT)
    _set(obr, "obr_27.tq_6", order.priority)
    _set(obr, "obr_31.ce_2", order.reason_for_exam)
    segments = [orc, obr]
    if order.clinical_history:
        nte = Segment("NTE", version=HL7_VERSION)
        _set(nte, "nte_1", "1")
        _set(nte, "nte_3", order.clinical_history)
        segments.append(nte)
    return segments


def _pv1() -> Segment:
    pv1 = Segment("PV1", version=HL7_VERSION)
    _set(pv1, "pv1_1", "1")
    _set(pv1, "pv1_2", "O")  # outpatient; Radscribe does not track visits
    return pv1


def _join(segments: Sequence[Segment]) -> str:
    return SEGMENT_SEPARATOR.join(segment.to_er7() for segment in segments)


def validate_strict(er7: str) -> None:
    """Raise hl7apy's error unless the whole message passes STRICT validation."""
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT)
    message.validate()


def validate_segments_strict(er7: str) -> None:
    """Parse tolerantly, then validate every segment at STRICT level."""
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    for segment in message.children:
        segment.validate()


# --------------------------------------------------------------------------- builders


def build_adt(
    patient: PatientInfo,
    *,
    trigger_event: str,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
) -> str:
    """ADT^A01 (admit), A04 (register) or A08 (update) with EVN, PID and PV1."""
    structure = {"A01": "ADT_A01", "A04": "ADT_A01", "A08": "ADT_A01"}.get(trigger_event)
    if structure is None:
        raise MessageBuildError(f"ADT trigger {trigger_event!r} is not A01, A04 or A08")
    msh = _msh(
        message_code="ADT",
        trigger_event=trigger_event,
        structure=structure,
        control_id=control_id,
        processing_id=processing_id,
        when=when,
    )
    evn = Segment("EVN", version=HL7_VERSION)
    _set(evn, "evn_1", trigger_event)
    _set(evn, "evn_2.ts_1", format_timestamp(when))
    er7 = _join([msh, evn, _pid(patient), _pv1()])
    validate_strict(er7)
    return er7


def build_adt_a01(
    patient: PatientInfo,
    *,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
) -> str:
    return build_adt(
        patient, trigger_event="A01", control_id=control_id, processing_id=processing_id, when=when
    )


def build_adt_a40(
    patient: PatientInfo,
    *,
    prior_mrn: str,
    prior_issuer: str,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
) -> str:
    """ADT^A40: the patient ``prior_mrn`` is merged into ``patient``."""
    _require(prior_mrn, "prior MRN (MRG-1)")
    msh = _msh(
        message_code="ADT",
        trigger_event="A40",
        structure="ADT_A39",
        control_id=control_id,
        processing_id=processing_id,
        when=when,
    )
    evn = Segment("EVN", version=HL7_VERSION)
    _set(evn, "evn_1", "A40")
    _set(evn, "evn_2.ts_1", format_timestamp(when))
    mrg = Segment("MRG", version=HL7_VERSION)
    _set(mrg, "mrg_1.cx_1", prior_mrn)
    _set(mrg, "mrg_1.cx_4.hd_1", prior_issuer)
    _set(mrg, "mrg_1.cx_5", IDENTIFIER_TYPE_MRN)
    er7 = _join([msh, evn, _pid(patient), mrg])
    validate_strict(er7)
    return er7


def build_orm_o01(
    patient: PatientInfo,
    order: OrderInfo,
    *,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
) -> str:
    """ORM^O01: one imaging order (ORC-1 NW, XO, CA or DC) for one patient."""
    msh = _msh(
        message_code="ORM",
        trigger_event="O01",
        structure="ORM_O01",
        control_id=control_id,
        processing_id=processing_id,
        when=when,
    )
    er7 = _join([msh, _pid(patient), _pv1(), *_order_segments(order, when=when)])
    validate_segments_strict(er7)
    return er7


def build_omi_o23(
    patient: PatientInfo,
    order: OrderInfo,
    *,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
    study_instance_uid: str | None = None,
) -> str:
    """OMI^O23: an imaging order with its IPC segment (accession with issuer, modality CT)."""
    msh = _msh(
        message_code="OMI",
        trigger_event="O23",
        structure="OMI_O23",
        control_id=control_id,
        processing_id=processing_id,
        when=when,
    )
    ipc = Segment("IPC", version=HL7_VERSION)
    _set(ipc, "ipc_1.ei_1", order.accession_number)
    _set(ipc, "ipc_1.ei_2", order.accession_issuer)
    _set(ipc, "ipc_2.ei_1", order.placer_order_number)
    _set(ipc, "ipc_3.ei_1", study_instance_uid or derived_study_uid(order))
    _set(ipc, "ipc_4.ei_1", order.placer_order_number)
    _set(ipc, "ipc_5", DIAGNOSTIC_SERVICE_CT)
    segments = [msh, _pid(patient), _pv1(), *_order_segments(order, when=when), ipc]
    er7 = _join(segments)
    validate_segments_strict(er7)
    return er7


def derived_study_uid(order: OrderInfo) -> str:
    """A stable Study Instance UID for an order (2.25 + a name-based UUID of its accession)."""
    name = f"{order.accession_issuer}/{order.accession_number}"
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'radscribe:accession:' + name).int}"


def _interpreter(element: Element, path: str, who: Interpreter, when: datetime) -> None:
    _require(who.id, "interpreter ID")
    _set(element, f"{path}.ndl_1.cnn_1", who.id)
    _set(element, f"{path}.ndl_1.cnn_2", who.family_name)
    _set(element, f"{path}.ndl_1.cnn_3", who.given_name)
    _set(element, f"{path}.ndl_2.ts_1", format_timestamp(when))


def section_code(name: str) -> tuple[str, str, str]:
    """The OBX-3 code of a report section (LOINC where one exists, else local)."""
    key = name.strip().lower().replace(" ", "_")
    if key in SECTION_CODES:
        return SECTION_CODES[key]
    return (key.upper()[:20] or "TEXT", name.strip() or "Text", LOCAL_CODING_SYSTEM)


def build_oru_r01(
    patient: PatientInfo,
    order: OrderInfo,
    result: ResultInfo,
    *,
    control_id: str,
    processing_id: str = "P",
    when: datetime | None = None,
) -> str:
    """ORU^R01 carrying a signed report: one TX OBX per line, grouped by section (OBX-4).

    OBR-25 and every OBX-11 carry ``result.result_status``; OBR-32 names the
    signing radiologist, OBR-33 the one who wrote the text.  The AI model
    behind the draft, if any, is recorded in an NTE after the OBR.
    """
    status = _choice(result.result_status, RESULT_STATUS_CODES, "result status (OBR-25)")
    if not any(section.text.strip() for section in result.sections):
        raise MessageBuildError("a result needs report text")
    msh = _msh(
        message_code="ORU",
        trigger_event="R01",
        structure="ORU_R01",
        control_id=control_id,
        processing_id=processing_id,
        when=when,
    )
    orc = Segment("ORC", version=HL7_VERSION)
    _set(orc, "orc_1", "RE")
    _set(orc, "orc_2.ei_1", order.placer_order_number)
    _set(orc, "orc_3.ei_1", order.accession_number)
    _set(orc, "orc_3.ei_2", order.accession_issuer)
    _set(orc, "orc_5", "CM" if status in ("F", "C") else "IP")
    _provider(orc, "orc_12", order.ordering_provider)

    obr = Segment("OBR", version=HL7_VERSION)
    _set(obr, "obr_1", "1")
    _set(obr, "obr_2.ei_1", order.placer_order_number)
    _set(obr, "obr_3.ei_1", order.accession_number)
    _set(obr, "obr_3.ei_2", order.accession_issuer)
    _set(obr, "obr_4.ce_1", order.procedure_code)
    _set(obr, "obr_4.ce_2", order.procedure_text)
    _set(obr, "obr_4.ce_3", LOCAL_CODING_SYSTEM if order.procedure_code else None)
    if result.observation_time is not None:
        _set(obr, "obr_7.ts_1", format_timestamp(result.observation_time))
    _provider(obr, "obr_16", order.ordering_provider)
    _set(obr, "obr_18", order.accession_number)
    _set(obr, "obr_22.ts_1", format_timestamp(result.signed_at))
    _set(obr, "obr_24", DIAGNOSTIC_SERVICE_CT)
    _set(obr, "obr_25", status)
    _interpreter(obr, "obr_32", result.principal_interpreter, result.signed_at)
    if result.assistant_interpreter is not None:
        _interpreter(obr, "obr_33", result.assistant_interpreter, result.signed_at)

    segments: list[Segment] = [msh, _pid(patient), orc, obr]
    notes = list(result.notes)
    if result.model_version:
        notes.insert(0, f"Draft assisted by AI model {result.model_version}; reviewed and signed.")
    for number, note in enumerate(notes, start=1):
        nte = Segment("NTE", version=HL7_VERSION)
        _set(nte, "nte_1", str(number))
        _set(nte, "nte_3", note)
        segments.append(nte)

    set_id = 0
    for section_number, section in enumerate(result.sections, start=1):
        code, text, system = section_code(section.name)
        for line in section.text.splitlines() or [""]:
            set_id += 1
            obx = Segment("OBX", version=HL7_VERSION)
            _set(obx, "obx_1", str(set_id))
            _set(obx, "obx_2", "TX")
            _set(obx, "obx_3.ce_1", code)
            _set(obx, "obx_3.ce_2", text)
            _set(obx, "obx_3.ce_3", system)
            _set(obx, "obx_4", str(section_number))
            if line.strip():
                _set(obx, "obx_5", line.rstrip())
            _set(obx, "obx_11", status)
            _set(obx, "obx_14.ts_1", format_timestamp(result.signed_at))
            segments.append(obx)
    er7 = _join(segments)
    validate_strict(er7)
    return er7


def build_ack(
    answered: AckInfo,
    *,
    code: str,
    control_id: str,
    error_text: str | None = None,
    error_code: str = ERROR_APPLICATION_INTERNAL,
    when: datetime | None = None,
) -> str:
    """An ACK answering ``answered`` with AA, AE or AR (or CA/CE/CR) and, on error, an ERR."""
    _choice(code, ACK_CODES, "acknowledgment code (MSA-1)")
    processing_id = answered.processing_id if answered.processing_id in PROCESSING_IDS else "P"
    msh = _msh(
        message_code="ACK",
        trigger_event=answered.trigger_event,
        structure="ACK",
        control_id=control_id,
        processing_id=processing_id,
        when=when,
        sending_application=answered.receiving_application or SENDING_APPLICATION,
        sending_facility=answered.receiving_facility or SENDING_FACILITY,
        receiving_application=answered.sending_application,
        receiving_facility=answered.sending_facility,
        version=HL7_VERSION,
    )
    msa = Segment("MSA", version=HL7_VERSION)
    _set(msa, "msa_1", code)
    _set(msa, "msa_2", answered.control_id)
    segments = [msh, msa]
    if code not in ("AA", "CA"):
        text = (error_text or "error").replace("\r", " ").replace("\n", " ")[:ERROR_TEXT_MAX]
        _set(msa, "msa_3", text)
        err = Segment("ERR", version=HL7_VERSION)
        _set(err, "err_3.cwe_1", error_code)
        _set(err, "err_3.cwe_3", "HL70357")
        _set(err, "err_4", "E")
        _set(err, "err_8", text)
        segments.append(err)
    return _join(segments)
