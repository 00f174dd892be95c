"""Remembered association negotiation (dicom_node.negotiation): the same request,
negotiation and answer as pynetdicom's own, byte for byte, whether computed or
remembered, and objects an association may change without touching the next one's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pynetdicom.acse
import pynetdicom.dul
import pynetdicom.fsm
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    MRImageStorage,
)
from pynetdicom import AE, build_context
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelGet,
    Verification,
)

from dicom_node import negotiation
from dicom_node.negotiation import (
    RememberedAssociateAC,
    RememberedAssociateRQ,
    _Remembered,
    remembered_negotiate_as_acceptor,
)

from .conftest import RunningNode

PRIVATE_SYNTAX = "1.2.826.0.1.3680043.9.9999.1"


def _context(context_id: int, abstract: str, syntaxes: list[str]) -> PresentationContext:
    context = build_context(abstract, syntaxes)
    context.context_id = context_id
    return context


def _request_bytes(calling: str = "MODALITY", password: bytes | None = None) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "RADSCRIBE"
    primitive.presentation_context_definition_list = [
        _context(1, Verification, [ImplicitVRLittleEndian]),
        _context(3, CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian]),
        _context(5, CTImageStorage, [JPEG2000Lossless]),  # the same class again
        _context(7, BasicTextSRStorage, [PRIVATE_SYNTAX, ImplicitVRLittleEndian]),
        _context(9, PatientRootQueryRetrieveInformationModelGet, [ImplicitVRLittleEndian]),
    ]
    length = MaximumLengthNotification()
    length.maximum_length_received = 32768
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.9999.2"
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "TEST_1"
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CTImageStorage
    role.scu_role = True
    role.scp_role = True
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 1
    window.maximum_number_operations_performed = 1
    primitive.user_information = [length, class_uid, version, role, window]
    if password is not None:
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 2  # username and passcode
        identity.primary_field = b"radiographer"
        identity.secondary_field = password
        primitive.user_information.append(identity)
    return A_ASSOCIATE_RQ(primitive).encode()


def _contexts(contexts: list[PresentationContext]) -> list[tuple[Any, ...]]:
    return [
        (
            cx.context_id,
            cx.abstract_syntax,
            tuple(cx.transfer_syntax),
            cx.result,
            cx.as_scu,
            cx.as_scp,
        )
        for cx in contexts
    ]


def _user_information(items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(type(item).__name__, dict(vars(item))) for item in items]


def _decoded(pdu_class: type[A_ASSOCIATE_RQ], data: bytes) -> A_ASSOCIATE:
    pdu = pdu_class()
    pdu.decode(data)
    return pdu.to_primitive()


def test_a_remembered_request_decodes_as_pynetdicom_does() -> None:
    data = _request_bytes()
    expected = _decoded(A_ASSOCIATE_RQ, data)
    first = _decoded(RememberedAssociateRQ, data)
    first.presentation_context_definition_list[1].add_transfer_syntax(ImplicitVRLittleEndian)
    first.presentation_context_definition_list.pop()
    second = _decoded(RememberedAssociateRQ, data)  # remembered: unchanged by the above
    for primitive in (expected, second):
        assert _contexts(primitive.presentation_context_definition_list) == _contexts(
            expected.presentation_context_definition_list
        )
    assert len(second.presentation_context_definition_list) == 5
    assert second.presentation_context_definition_list[1].transfer_syntax == [
        JPEGBaseline8Bit,
        ExplicitVRLittleEndian,
    ]
    assert _user_information(second.user_information) == _user_information(
        expected.user_information
    )
    assert (second.calling_ae_title, second.called_ae_title) == ("MODALITY", "RADSCRIBE")
    assert second.application_context_name == expected.application_context_name
    remembered_pdu = RememberedAssociateRQ()
    remembered_pdu.decode(data)
    assert remembered_pdu.encode() == data  # and pynetdicom's debug log can print it
    assert "Presentation Context" in str(remembered_pdu)
    other = _decoded(RememberedAssociateRQ, _request_bytes(calling="OTHER"))
    assert other.calling_ae_title == "OTHER"  # fixed fields are never remembered


def test_nothing_but_the_proposed_contexts_is_remembered_of_a_request() -> None:
    data = _request_bytes(password=b"s3cret-passcode")
    decoded = _decoded(RememberedAssociateRQ, data)
    identity = [i for i in decoded.user_information if isinstance(i, UserIdentityNegotiation)]
    assert [item.secondary_field for item in identity] == [b"s3cret-passcode"]
    remembered = [cast(bytes, key) for key in negotiation._proposals._values]
    assert remembered
    assert not any(b"s3cret-passcode" in key for key in remembered)


def _negotiation_cases() -> list[tuple[list[PresentationContext], list[PresentationContext], Any]]:
    requested = _decoded(A_ASSOCIATE_RQ, _request_bytes()).presentation_context_definition_list
    image = build_context(CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian])
    with_roles = build_context(CTImageStorage, [ExplicitVRLittleEndian])
    with_roles.scu_role, with_roles.scp_role = True, False
    supported = [
        build_context(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        image,
        build_context(BasicTextSRStorage, [ImplicitVRLittleEndian, PRIVATE_SYNTAX]),
        build_context(MRImageStorage, [ExplicitVRLittleEndian]),
    ]
    return [
        (requested, supported, None),
        (requested, supported, {CTImageStorage: (True, True)}),
        (requested, [supported[0], with_roles], {CTImageStorage: (True, False)}),
        (requested, [], None),
        ([], supported, None),
    ]


def _negotiated(function: Callable[..., Any], case: tuple[Any, ...]) -> tuple[Any, Any]:
    results, roles = function(*case)
    return _contexts(results), [(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles]


def test_remembered_negotiation_answers_as_pynetdicom_does() -> None:
    for case in _negotiation_cases():
        expected = _negotiated(negotiate_as_acceptor, case)
        first_results, first_roles = remembered_negotiate_as_acceptor(*case)
        assert (
            _contexts(first_results),
            [(r.sop_class_uid, r.scu_role, r.scp_role) for r in first_roles],
        ) == expected
        for context in first_results:  # what an association may do to its own
            context.result = 0x01
            context.transfer_syntax = [ImplicitVRLittleEndian]
        for role in first_roles:
            role.scp_role = None
        assert _negotiated(remembered_negotiate_as_acceptor, case) == expected
    assert [cx[3] for cx in _negotiated(negotiate_as_acceptor, _negotiation_cases()[0])[0]] == [
        0x00,  # Verification
        0x00,  # CT, JPEG Baseline refused but Explicit VR accepted
        0x00,  # CT again, JPEG 2000 Lossless
        0x00,  # SR, its private syntax
        0x03,  # Q/R Get: not supported
    ]


def _answer(pdu_class: type[A_ASSOCIATE_AC], results: list[PresentationContext]) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "MODALITY"
    primitive.called_ae_title = "RADSCRIBE"
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = results
    length = MaximumLengthNotification()
    length.maximum_length_received = 262144
    class_uid = ImplementationClassUIDNotification()
    class_uid.implementation_class_uid = "1.2.826.0.1.3680043.9.9999.3"
    primitive.user_information = [length, class_uid]
    return pdu_class(primitive).encode()


def test_a_remembered_answer_encodes_as_pynetdicom_does() -> None:
    for case in _negotiation_cases():
        results, _roles = negotiate_as_acceptor(*case)
        expected = _answer(A_ASSOCIATE_AC, results)
        assert _answer(RememberedAssociateAC, results) == expected
        assert _answer(RememberedAssociateAC, results) == expected  # remembered items
    decoded = A_ASSOCIATE_AC()
    decoded.decode(
        _answer(RememberedAssociateAC, negotiate_as_acceptor(*_negotiation_cases()[0])[0])
    )
    assert [
        cx.result for cx in decoded.to_primitive().presentation_context_definition_results_list
    ] == [0, 0, 0, 0, 3]


def test_what_is_remembered_is_bounded_least_recently_used_first_out() -> None:
    remembered: _Remembered[int] = _Remembered(2)
    computed: list[str] = []

    def value(key: str) -> Callable[[], int]:
        def compute() -> int:
            computed.append(key)
            return len(computed)

        return compute

    assert remembered.get("a", value("a")) == 1
    assert remembered.get("b", value("b")) == 2
    assert remembered.get("a", value("a")) == 1  # remembered, and now the most recent
    assert remembered.get("c", value("c")) == 3  # drops b
    assert remembered.get("b", value("b")) == 4
    assert computed == ["a", "b", "c", "b"]
    assert len(remembered) == 2


def test_the_node_answers_a_repeated_proposal_alike_from_memory(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node()
    requester = AE(ae_title="TESTSCU")
    requester.add_requested_context(CTImageStorage, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    requester.add_requested_context(BasicTextSRStorage, [PRIVATE_SYNTAX])
    requester.add_requested_context(Verification)
    answers = []
    for _ in range(3):
        assoc = requester.associate("127.0.0.1", node.port, ae_title="RADSCRIBE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        answers.append(
            sorted((cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts)
        )
        assoc.release()
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == sorted(
            [
                (CTImageStorage, ExplicitVRLittleEndian),
                (BasicTextSRStorage, PRIVATE_SYNTAX),
                (Verification, ExplicitVRLittleEndian),
            ]
        )
    )
    assert pynetdicom.dul._PDU_TYPES[b"\x01"][0] is RememberedAssociateRQ
    assert pynetdicom.acse.negotiate_as_acceptor is remembered_negotiate_as_acceptor
    assert pynetdicom.fsm.A_ASSOCIATE_AC is RememberedAssociateAC
