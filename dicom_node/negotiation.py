"""Association negotiation, remembered: a request seen before is answered without redoing it.

A sender proposes the same presentation contexts on every association (DCMTK's
storescu offers 128 storage classes with three transfer syntaxes each, whatever
it sends).  pynetdicom decodes that request into items, turns the items into
primitives, negotiates them and builds and encodes the A-ASSOCIATE-AC from
objects again, validating every UID on the way: about 10 ms of CPU on the 2-CPU
VM (a scratch timing of these steps on storescu's request), more than storing a
512x512 slice.  Each step here is a pure function of its input, remembered by
that input's value:

- :class:`RememberedAssociateRQ` decodes the request's presentation context
  items and builds its contexts once per distinct proposal (the items' bytes);
  every association gets fresh copies of the contexts, and the rest of the
  request (AE titles, user information) is decoded as usual and never kept;
- :func:`remembered_negotiate_as_acceptor` keeps pynetdicom's result for each
  distinct (proposed contexts, supported contexts, proposed roles), again handed
  out as fresh copies;
- :class:`RememberedAssociateAC` builds each accepted or rejected context's item
  of the A-ASSOCIATE-AC once per (context ID, result, transfer syntax) and
  encodes it once.

The results are pynetdicom's own, byte for byte (``tests/dicom/test_negotiation.py``);
the objects handed to an association are its own to change.  The caches are
bounded, so a peer proposing something new every time only churns them.

``bench/bench_association.py --variant old=<tree before this>``, 2026-11-30:
the node's CPU for a storescu association sending one small instance went
from 9.3 to 6.2 ms (5 rounds, paired 0.70x; a 3-round run: 13.0 to 7.6 ms,
0.59x); Orthanc spends 3.2 ms and storescp 1.5 ms on the same.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, cast

import pynetdicom.acse
import pynetdicom.dul
import pynetdicom.fsm
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_items import (
    PDU_ITEM_TYPES,
    ApplicationContextItem,
    PDUItem,
    PresentationContextItemAC,
    PresentationContextItemRQ,
    UserInformationItem,
)
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

MAX_REMEMBERED_REQUESTS = 64
MAX_REMEMBERED_CONTEXT_ITEMS = 4096
ASSOCIATE_RQ_PDU = 0x01  # PS3.8 section 9.3.2
ASSOCIATE_RQ_TYPE = bytes((ASSOCIATE_RQ_PDU,))
ASSOCIATE_RQ_EVENT = "Evt6"  # the state machine's event: A-ASSOCIATE-RQ PDU received
ASSOCIATE_AC_PDU = 0x02  # PS3.8 section 9.3.3
CONTEXT_RQ_ITEM = 0x20  # PS3.8 table 9-13
CONTEXT_AC_ITEM = 0x21  # PS3.8 table 9-18

_Value = TypeVar("_Value")
_Object = TypeVar("_Object")


class _Remembered(Generic[_Value]):
    """A bounded, thread-safe map of computed values, least recently used first out."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: OrderedDict[Hashable, _Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], _Value]) -> _Value:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._limit:
                self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)


def fresh_copy(original: _Object) -> _Object:
    """A shallow copy with its own lists (pynetdicom's primitives hold lists of UIDs,
    which are immutable strings)."""
    copy = object.__new__(type(original))
    state = original.__dict__.copy()
    for name, value in state.items():
        if value.__class__ is list:
            state[name] = value.copy()
    copy.__dict__ = state
    return copy


# --- the request ---------------------------------------------------------------------

# A proposal's presentation context items (shared, only read) and the contexts made
# from them (copied for each association), keyed by the items as received; nothing
# else of a request is remembered: its user information may carry credentials.
_Proposal = tuple[tuple[PresentationContextItemRQ, ...], tuple[PresentationContext, ...]]
_proposals: _Remembered[_Proposal] = _Remembered(MAX_REMEMBERED_REQUESTS)


def _decoded_item(item_type: int, data: bytes) -> PDUItem:
    item = PDU_ITEM_TYPES[item_type]()
    item.decode(data)
    return item


def _proposal(pieces: list[tuple[int, bytes]]) -> _Proposal:
    items = tuple(
        cast(PresentationContextItemRQ, _decoded_item(item_type, data))
        for item_type, data in pieces
        if item_type == CONTEXT_RQ_ITEM
    )
    return items, tuple(item.to_primitive() for item in items)


class RememberedAssociateRQ(A_ASSOCIATE_RQ):
    """A received A-ASSOCIATE-RQ whose presentation context items are decoded, and
    turned into contexts, once per distinct proposal."""

    _contexts: tuple[PresentationContext, ...] | None = None

    @property
    def pdu_type(self) -> int:  # pynetdicom looks its own classes up by exact type
        return ASSOCIATE_RQ_PDU

    def _wrap_generate_items(self, bytestream: bytes) -> list[PDUItem]:
        pieces = list(self._generate_items(bytestream))
        key = b"".join(data for item_type, data in pieces if item_type == CONTEXT_RQ_ITEM)
        items, self._contexts = _proposals.get(key, functools.partial(_proposal, pieces))
        remembered = iter(items)
        return [
            next(remembered) if item_type == CONTEXT_RQ_ITEM else _decoded_item(item_type, data)
            for item_type, data in pieces
        ]

    def to_primitive(self) -> A_ASSOCIATE:
        if self._contexts is None:  # not decoded from bytes
            return super().to_primitive()
        primitive = A_ASSOCIATE()
        primitive.calling_ae_title = self.calling_ae_title
        primitive.called_ae_title = self.called_ae_title
        primitive.application_context_name = self.application_context_name
        primitive.presentation_context_definition_list.extend(
            fresh_copy(cx) for cx in self._contexts
        )
        for item in self.variable_items:
            if isinstance(item, UserInformationItem):
                primitive.user_information = item.to_primitive()
        return primitive


# --- the negotiation -----------------------------------------------------------------

_Negotiated = tuple[tuple[PresentationContext, ...], tuple[Any, ...]]
_negotiations: _Remembered[_Negotiated] = _Remembered(MAX_REMEMBERED_REQUESTS)


def _negotiation_key(
    rq_contexts: list[PresentationContext],
    ac_contexts: list[PresentationContext],
    roles: dict[Any, tuple[bool | None, bool | None]] | None,
) -> Hashable:
    """Everything :func:`negotiate_as_acceptor` reads of its arguments."""
    return (
        tuple((cx.context_id, cx.abstract_syntax, tuple(cx.transfer_syntax)) for cx in rq_contexts),
        tuple(
            (cx.abstract_syntax, tuple(cx.transfer_syntax), cx.scu_role, cx.scp_role)
            for cx in ac_contexts
        ),
        tuple(sorted((roles or {}).items())),
    )


def remembered_negotiate_as_acceptor(
    rq_contexts: list[PresentationContext],
    ac_contexts: list[PresentationContext],
    roles: dict[Any, tuple[bool | None, bool | None]] | None = None,
) -> tuple[list[PresentationContext], list[Any]]:
    """pynetdicom's :func:`negotiate_as_acceptor`, remembered (fresh copies each call)."""
    key = _negotiation_key(rq_contexts, ac_contexts, roles)

    def negotiate() -> _Negotiated:
        results, reply_roles = negotiate_as_acceptor(rq_contexts, ac_contexts, roles)
        return tuple(results), tuple(reply_roles)

    results, reply_roles = _negotiations.get(key, negotiate)
    return [fresh_copy(cx) for cx in results], [fresh_copy(role) for role in reply_roles]


# --- the answer ----------------------------------------------------------------------


class _EncodedOnceContextItemAC(PresentationContextItemAC):
    """A presentation context item of an A-ASSOCIATE-AC, shared by the associations
    that answer the same context the same way, and encoded once."""

    _encoded: bytes | None = None

    @property
    def item_type(self) -> int:
        return CONTEXT_AC_ITEM

    def encode(self) -> bytes:
        if self._encoded is None:
            self._encoded = super().encode()
        return self._encoded


def _context_item(context_id: int, result: int, transfer_syntax: str) -> PresentationContextItemAC:
    primitive = PresentationContext()
    primitive.context_id = context_id
    primitive.result = result
    primitive.transfer_syntax = [transfer_syntax]
    item = _EncodedOnceContextItemAC()
    item.from_primitive(primitive)
    item.encode()
    return item


_context_items: _Remembered[PresentationContextItemAC] = _Remembered(MAX_REMEMBERED_CONTEXT_ITEMS)


class RememberedAssociateAC(A_ASSOCIATE_AC):
    """pynetdicom's A-ASSOCIATE-AC, its presentation context items remembered."""

    @property
    def pdu_type(self) -> int:
        return ASSOCIATE_AC_PDU

    def from_primitive(self, primitive: A_ASSOCIATE) -> None:
        self.reserved_aet = primitive.called_ae_title
        self.reserved_aec = primitive.calling_ae_title
        application_context = ApplicationContextItem()
        application_context.application_context_name = cast(str, primitive.application_context_name)
        self.variable_items.append(application_context)
        for context in primitive.presentation_context_definition_results_list:
            context_id = cast(int, context.context_id)
            result = cast(int, context.result)
            syntax = context.transfer_syntax[0]
            self.variable_items.append(
                _context_items.get(
                    (context_id, result, syntax),
                    functools.partial(_context_item, context_id, result, syntax),
                )
            )
        user_information = UserInformationItem()
        user_information.from_primitive(primitive.user_information)
        self.variable_items.append(user_information)


def install_remembered_negotiation() -> None:
    """Decode, negotiate and answer through the remembered steps (process-wide, in
    pynetdicom's own tables; the results are pynetdicom's own)."""
    pynetdicom.dul._PDU_TYPES[ASSOCIATE_RQ_TYPE] = (RememberedAssociateRQ, ASSOCIATE_RQ_EVENT)
    pynetdicom.acse.negotiate_as_acceptor = remembered_negotiate_as_acceptor
    pynetdicom.fsm.A_ASSOCIATE_AC = RememberedAssociateAC  # type: ignore[misc]
