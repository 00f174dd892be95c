"""The inbound listener, fed by python-hl7's mllp_send with real and built messages."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.domain import Hl7MessageStatus, OrderStatus, Priority
from app.core.tables import Hl7Message, Order, Patient
from app.emr.messages import OrderInfo, PatientInfo, build_adt_a01, build_orm_o01
from app.emr.runtime import Hl7Component

from .conftest import ack_fields, mllp_send  # type: ignore[import-not-found]

# File -> the ACK code Radscribe must answer (MSH-15/16 empty: original mode,
# except sample_win.hl7, whose MSH-15 AL / MSH-16 NE asks for an accept ACK).
EXPECTED_ACKS = {
    "dcm4che/ADT_A31-UpdatePersonInfo.hl7": "AR",  # A31 is not handled
    "dcm4che/ADT_A40-PatientMerge.hl7": "AA",
    "dcm4che/OMI_O23-ImagingOrder.hl7": "AA",
    "dcm4che/ORM_O01-GeneralOrder.hl7": "AA",  # really OMI^O23, same accession again
    "dcm4che/ORU_R01-PDF.hl7": "AR",
    "dcm4che/ORU_R01-SR.hl7": "AR",
    "dcm4che/SIU_S12-NewAppointmentBooking.hl7": "AR",
    "fhir_converter/ADT-A01-01.hl7": "AA",  # v2.8, LF
    "fhir_converter/ADT-A08-01.hl7": "AA",
    "fhir_converter/MDM-T02-01.hl7": "AR",
    "fhir_converter/ORM-O01-01.hl7": "AA",  # BOM, v2.6
    "fhir_converter/ORM-O01-03.hl7": "AA",  # two orders
    "fhir_converter/ORU-R01-01.hl7": "CR",  # MSH-15 AL, MSH-16 NE: rejected -> CR
    "fhir_converter/ORU-R01-RMGEAD.hl7": "AR",
    "linuxforhealth/ORU-multiline-short.hl7": "AR",
    "linuxforhealth/ORU-multiline.hl7": "AR",
    "linuxforhealth/sample_win.hl7": "CA",  # CRLF, doubled backslash, MSH-15 AL
}


def _control_id(path: Path) -> str:
    raw = path.read_bytes().lstrip(b"\xef\xbb\xbf")
    first = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")[0].decode("latin-1")
    return first.split("|")[9]


def test_real_messages_get_the_right_acks(
    shared_data: Path,
    listener: Hl7Component,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    files = [shared_data / "hl7" / name for name in EXPECTED_ACKS]
    replies = mllp_send(files, listener.listen_port or 0, tmp_path)  # one connection, all files
    assert len(replies) == len(files)
    for (name, expected), reply in zip(EXPECTED_ACKS.items(), replies, strict=True):
        code, answered = ack_fields(reply)
        assert (name, code) == (name, expected)
        assert answered == _control_id(shared_data / "hl7" / name)
        if code in ("AR", "AE", "CR"):
            assert b"\rERR|" in reply, name

    with session_factory() as session:
        rows = session.scalars(select(Hl7Message).order_by(Hl7Message.id)).all()
        assert len(rows) == len(files)  # every message was stored raw
        assert rows[0].raw == files[0].read_bytes()
        assert rows[10].raw.startswith(b"\xef\xbb\xbf")  # ORM-O01-01 kept byte for byte
        statuses = {row.status for row in rows}
        assert statuses == {Hl7MessageStatus.PROCESSED, Hl7MessageStatus.REJECTED}
        orders = {o.accession_number: o for o in session.scalars(select(Order))}
        assert set(orders) == {"AccessionNumber", "1201", "2301"}
        head_ct = orders["1201"]
        assert head_ct.accession_issuer == "GHHFiller"
        assert head_ct.procedure_code == "24725-4"
        assert head_ct.procedure_text == "CT Head"
        assert head_ct.ordering_provider == "3850^ORDPROVIDER^JONES"
        assert head_ct.status is OrderStatus.OPEN
        imaging = orders["AccessionNumber"]
        assert imaging.reason_for_exam is not None
        assert "RequestedProcedureComments" in (imaging.clinical_history or "")
        patients = {(p.mrn, p.issuer): p for p in session.scalars(select(Patient))}
        # ADT^A40 ran before any OLD_PID_1 existed: the new identifier is simply registered.
        assert ("NEW_PID_1", "ADT1") in patients
        assert ("PID1234", "A") in patients  # sample_win.hl7, CRLF and doubled backslash
        assert patients[("PATID1234", "test1")].birth_date == "19880818"


def test_orders_update_cancel_merge_and_errors(
    listener: Hl7Component, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    old = PatientInfo("OLD-7", "HOSP", "Roe", "Rita", "19600101", "F")
    new = PatientInfo("NEW-7", "HOSP", "Roe", "Rita", "19600101", "F")
    order = OrderInfo(
        accession_number="A-700",
        accession_issuer="HOSP",
        placer_order_number="P-700",
        procedure_code="CTABD",
        procedure_text="CT abdomen",
        priority="R",
        reason_for_exam="pain",
        clinical_history=None,
        ordering_provider=None,
    )
    stat = OrderInfo(**{**order.__dict__, "priority": "S", "order_control": "XO"})
    cancel = OrderInfo(**{**order.__dict__, "order_control": "CA"})
    unknown = OrderInfo(**{**order.__dict__, "accession_number": "A-404", "order_control": "XO"})
    from app.emr.messages import build_adt_a40

    messages = {
        "adt.hl7": build_adt_a01(old, control_id="T-1"),
        "nw.hl7": build_orm_o01(old, order, control_id="T-2"),
        "xo.hl7": build_orm_o01(old, stat, control_id="T-3"),
        "merge.hl7": build_adt_a40(new, prior_mrn="OLD-7", prior_issuer="HOSP", control_id="T-4"),
        "bad-xo.hl7": build_orm_o01(old, unknown, control_id="T-5"),
        "garbage.hl7": "this is not HL7",
        "ca.hl7": build_orm_o01(new, cancel, control_id="T-6"),
    }
    files = []
    for name, text in messages.items():
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8"))
        files.append(path)
    replies = mllp_send(files, listener.listen_port or 0, tmp_path)
    codes = [ack_fields(reply)[0] for reply in replies]
    assert codes == ["AA", "AA", "AA", "AA", "AE", "AR", "AA"]
    assert b"A-404" in replies[4]  # the ERR says which order was not found

    with session_factory() as session:
        stored = session.scalar(select(Order).where(Order.accession_number == "A-700"))
        assert stored is not None
        assert stored.priority is Priority.STAT  # XO applied
        assert stored.status is OrderStatus.CANCELLED  # CA applied
        patient = session.get(Patient, stored.patient_id)
        assert patient is not None and patient.mrn == "NEW-7"  # the merge renamed OLD-7
        errors = session.scalars(
            select(Hl7Message).where(Hl7Message.status == Hl7MessageStatus.ERROR)
        ).all()
        assert [row.control_id for row in errors] == ["T-5"]
        assert "A-404" in (errors[0].error or "")
