"""Validation and normalisation of add-messages requests (reference §6.1–§6.6, §7).

The enqueue service calls, in this order:

1. :func:`foreign_tenant` — with a tenant key, any other ``tenant_id`` anywhere in the
   request refuses it as a whole (403 ``forbidden_tenant``, reference §4.3), before validation;
2. :func:`validate_envelope` — the request-level rules of reference §6.1 (422 / 413);
3. :func:`validate_batch` — every item through the rules 1–26 of reference §6.4, in request order,
   with rule 6 (duplicate id in request) decided by a seen-set. The store then applies
   rules 27/28 (in flight, already sent) to the accepted items.

An accepted item comes out as the stored request item of reference §5.3 (``message``); a rejected one
carries what reference §6.9 needs to record it. Everything here is pure and allocation-light: one
message with a sender, one or two recipients, a subject and a body is validated in a few
microseconds, since ingest has to reach tens of thousands of messages per second.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from mailproxyd.core import reasons as R
from mailproxyd.core.addresses import (
    Address,
    InvalidAddress,
    address_needs_smtputf8,
    parse_address,
    split_address_list,
)
from mailproxyd.core.attachment_rules import (
    MIB,
    AttachmentPolicy,
    AttachmentProblem,
    check_attachment,
    normalise_roots,
)
from mailproxyd.core.ids import is_identifier
from mailproxyd.core.message_ids import new_message_id, normalise_message_id
from mailproxyd.core.models import message as message_model
from mailproxyd.core.models.fields import Field
from mailproxyd.core.models.message import CONTENT_TYPES, MAX_RECIPIENTS, RESERVED_HEADERS
from mailproxyd.core.priorities import DEFAULT_PRIORITY, parse_priority
from mailproxyd.errors import MailProxyError, ValidationFailed

_LIST_FIELDS: Final = ("to", "cc", "bcc", "reply_to")
_PRIORITY_PROBLEM: Final = "must be 0-3 or one of immediate, high, medium, low"

__all__ = [
    "MAX_RECIPIENTS",
    "RESERVED_HEADERS",
    "Accepted",
    "BatchResult",
    "Envelope",
    "Rejected",
    "TenantLookup",
    "TenantView",
    "TooManyMessages",
    "ValidationContext",
    "foreign_tenant",
    "new_message_id",
    "normalise_message_id",
    "validate_batch",
    "validate_envelope",
    "validate_item",
]

_STR: Final = (str,)
#: The Python types of each simple field kind (``bool`` is not an ``int`` here: JSON ``true``
#: is no number).
_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": _STR,
    "text": _STR,
    "choice": _STR,
    "identifier": _STR,
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


class _Rule:
    """One simple :class:`~mailproxyd.core.models.fields.Field` of the message table, compiled.

    ``ok(value)`` judges type, length, pattern, choices and bounds, exactly as the table says;
    the caller turns a refusal into the rule's reason (reference §6.4). ``ok`` is a closure
    specialised to the constraints the field has, since it runs several times per item.
    """

    __slots__ = ("ok", "types")

    def __init__(self, field: Field) -> None:
        self.types = _TYPES[field.kind]
        self.ok = _checker(field, self.types)


def _checker(field: Field, types: tuple[type, ...]) -> Callable[[Any], bool]:
    if types is not _STR:
        low, high = field.minimum, field.maximum

        def number_ok(value: Any) -> bool:
            if type(value) not in types:
                return False
            # `not >=`: NaN is refused too.
            if low is not None and not value >= low:
                return False
            return high is None or value <= high

        return number_ok
    shortest, longest = field.min_length or 0, field.max_length
    # fullmatch, so the table's ECMA ``^…$`` anchors cannot accept a trailing newline.
    match = re.compile(field.pattern).fullmatch if field.pattern else None
    choices = frozenset(field.enum) if field.enum is not None else None
    if not shortest and longest is None and match is None and choices is None:
        return _is_str

    def text_ok(value: Any) -> bool:
        if type(value) is not str:
            return False
        size = len(value)
        if size < shortest or (longest is not None and size > longest):
            return False
        if match is not None and match(value) is None:
            return False
        return choices is None or value in choices

    return text_ok


def _is_str(value: Any) -> bool:
    return type(value) is str


class _Rules(NamedTuple):
    """The message table compiled for one version of ``MESSAGE_FIELDS``."""

    fields: tuple[Field, ...]
    id: _Rule
    tenant_id: _Rule
    account_id: _Rule
    sender: _Rule
    #: The string and array forms of the address lists, and the recipient total (rule 14).
    address_text: _Rule
    address: _Rule
    max_recipients: int
    return_path: _Rule
    subject: _Rule
    body: _Rule
    content_type: _Rule
    header_name: _Rule
    header_values: tuple[_Rule, ...]
    message_id: _Rule
    deferred_ts: _Rule
    batch_code: _Rule


def _variant(field: Field, kind: str) -> Field:
    assert field.variants is not None
    return next(variant for variant in field.variants if variant.kind == kind)


def _compile(fields: tuple[Field, ...]) -> _Rules:
    by_name = {field.name: field for field in fields}
    to_list = _variant(by_name["to"], "array")
    headers = by_name["headers"]
    assert to_list.items is not None and to_list.max_length is not None
    assert headers.keys is not None and headers.values is not None
    assert headers.values.variants is not None
    return _Rules(
        fields,
        _Rule(by_name["id"]),
        _Rule(by_name["tenant_id"]),
        _Rule(by_name["account_id"]),
        _Rule(by_name["from"]),
        _Rule(_variant(by_name["to"], "string")),
        _Rule(to_list.items),
        to_list.max_length,
        _Rule(by_name["return_path"]),
        _Rule(by_name["subject"]),
        _Rule(by_name["body"]),
        _Rule(by_name["content_type"]),
        _Rule(headers.keys),
        tuple(_Rule(variant) for variant in headers.values.variants),
        _Rule(by_name["message_id"]),
        _Rule(by_name["deferred_ts"]),
        _Rule(by_name["batch_code"]),
    )


_compiled: list[_Rules] = []


def _rules() -> _Rules:
    """The compiled rules of the current ``MESSAGE_FIELDS`` (recompiled when it is replaced)."""
    fields = message_model.MESSAGE_FIELDS
    if _compiled and _compiled[0].fields is fields:
        return _compiled[0]
    _compiled[:] = [_compile(fields)]
    return _compiled[0]


class TooManyMessages(MailProxyError):
    """More messages than ``GMP_MAX_BATCH`` in one request (HTTP 413 ``too_many_messages``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Cannot enqueue more than {limit} messages at once")
        self.limit = limit


class Envelope(NamedTuple):
    """The request-level part of add-messages after :func:`validate_envelope`."""

    messages: list[Any]
    #: The request's ``default_priority``, resolved to an integer, or ``None``.
    default_priority: int | None
    #: The request's ``tenant_id`` (default for items without one), or ``None``.
    tenant_id: str | None


class TenantView(NamedTuple):
    """What validation needs to know about one tenant."""

    #: The account flagged ``is_default``, if any.
    default_account_id: str | None
    account_ids: frozenset[str] | set[str]
    has_client_base_url: bool = False


#: ``lookup(tenant_id)`` → the tenant's view, or ``None`` when the tenant does not exist.
#: A plain ``(default_account_id, account_ids)`` pair is accepted as well.
TenantLookup = Callable[[str], "TenantView | tuple[str | None, Iterable[str]] | None"]


@dataclass(slots=True)
class ValidationContext:
    """Per-request data for :func:`validate_item` / :func:`validate_batch`."""

    #: The tenant of the caller's tenant key; ``None`` for the admin token.
    caller_tenant: str | None
    lookup: TenantLookup
    #: The envelope's ``tenant_id`` (reference §6.1), default for items without one.
    envelope_tenant: str | None = None
    #: ``default_priority`` of the request, else ``GMP_DEFAULT_PRIORITY``.
    default_priority: int = DEFAULT_PRIORITY
    attachment_max_mb: int = 25
    #: ``GMP_ATTACHMENT_FS_ROOTS``; empty disables filesystem attachments.
    attachment_fs_roots: tuple[str, ...] = ()
    _views: dict[str, TenantView | None] = field(default_factory=dict, repr=False)
    # A request repeats its sender on nearly every item; recipients rarely repeat, so only
    # senders are memoised (bounded: a hostile request cannot grow it past the batch size).
    _senders: dict[str, Address] = field(default_factory=dict, repr=False)
    _roots: tuple[str, ...] | None = field(default=None, repr=False)

    def tenant(self, tenant_id: str) -> TenantView | None:
        """The tenant's view, looked up once per request; ``None`` for unknown or invalid ids."""
        try:
            return self._views[tenant_id]
        except KeyError:
            pass
        found = self.lookup(tenant_id) if _rules().tenant_id.ok(tenant_id) else None
        view: TenantView | None
        if found is None or isinstance(found, TenantView):
            view = found
        else:
            view = TenantView(*found)  # type: ignore[arg-type]
        self._views[tenant_id] = view
        return view

    def attachment_policy(self, view: TenantView) -> AttachmentPolicy:
        if self._roots is None:
            self._roots = normalise_roots(self.attachment_fs_roots)
        return AttachmentPolicy(
            self.attachment_max_mb * MIB, self._roots, bool(view.has_client_base_url)
        )


@dataclass(slots=True)
class Accepted:
    """An item that passed rules 1–26, normalised for the store."""

    index: int
    id: str
    tenant_id: str
    account_id: str
    priority: int
    #: Not before this time (whole seconds); ``None`` for "now".
    deferred_ts: int | None
    batch_code: str | None
    #: The ``Message-ID`` header value, with angle brackets.
    message_id: str
    #: True when ``message_id`` was generated here; a replacement then keeps the stored one (reference §6.7).
    message_id_generated: bool
    #: Some address has a non-ASCII local part: sending needs SMTPUTF8 (reference §10.2).
    smtputf8: bool
    #: The stored request item of reference §5.3 ``message`` (addresses as lists, resolved fields).
    message: dict[str, Any]


@dataclass(slots=True)
class Rejected:
    """An item refused by a rule of reference §6.4, with what reference §6.9 needs to record it."""

    index: int
    #: The client id, ``None`` when no usable id was given (rules 1–3).
    id: str | None
    reason: str
    #: The number of the rule of reference §6.4 that failed.
    rule: int
    #: The owning tenant when known and accessible to the caller (rules ≥ 6), else ``None``.
    tenant_id: str | None = None
    #: ``account_id`` as given, when it was a string.
    account_id: str | None = None
    #: The item's priority, or the default when it had none or an invalid one.
    priority: int = DEFAULT_PRIORITY
    raw: Any = None

    @property
    def validation_failure(self) -> bool:
        """True for rules 1–5 and 7–26; false for the idempotency rejections 6, 27, 28."""
        return self.rule not in R.IDEMPOTENCY_RULES

    @property
    def recordable(self) -> bool:
        """Whether reference §6.9 records this rejection (rules 7–26 with a known tenant)."""
        return 7 <= self.rule <= 26 and self.tenant_id is not None


class BatchResult(NamedTuple):
    accepted: list[Accepted]
    #: Rejections in request order.
    rejected: list[Rejected]


def foreign_tenant(body: Any, caller_tenant: str | None) -> str | None:
    """The first ``tenant_id`` in an add-messages body that is not ``caller_tenant``.

    ``None`` when the caller is the admin (``caller_tenant`` is ``None``) or every named
    tenant is the caller's own. Absent, ``null`` and ``""`` name no tenant. The returned
    text is meant for ``Token not authorized for tenant '<id>'``.
    """
    if caller_tenant is None or type(body) is not dict:
        return None
    named = body.get("tenant_id")
    if named is not None and named != "" and named != caller_tenant:
        return named if type(named) is str else R.show_value(named)
    items = body.get("messages")
    if type(items) is not list:
        return None
    for item in items:
        if type(item) is dict:
            named = item.get("tenant_id")
            if named is not None and named != "" and named != caller_tenant:
                return named if type(named) is str else R.show_value(named)
    return None


def validate_envelope(body: Any, max_batch: int) -> Envelope:
    """Check the request envelope of reference §6.1; raise ``ValidationFailed`` or ``TooManyMessages``."""
    if type(body) is not dict:
        raise ValidationFailed([("messages", "required")])
    items = body.get("messages")
    if items is None:
        raise ValidationFailed([("messages", "required")])
    if type(items) is not list:
        raise ValidationFailed([("messages", "must be a list")])
    errors: list[tuple[str, str]] = []
    default_priority = None
    raw_priority = body.get("default_priority")
    if raw_priority is not None:
        default_priority = parse_priority(raw_priority)
        if default_priority is None:
            errors.append(("default_priority", _PRIORITY_PROBLEM))
    tenant_id = body.get("tenant_id")
    if tenant_id == "":
        tenant_id = None
    if tenant_id is not None and not is_identifier(tenant_id):
        errors.append(("tenant_id", "must be a tenant id"))
    if errors:
        raise ValidationFailed(errors)
    if len(items) > max_batch:
        raise TooManyMessages(max_batch)
    return Envelope(items, default_priority, tenant_id)


def validate_batch(envelope: Envelope, ctx: ValidationContext) -> BatchResult:
    """Validate every item of a request, in order, with rule 6 applied across items."""
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(envelope.messages):
        outcome = validate_item(raw, ctx, index, seen)
        if type(outcome) is Accepted:
            accepted.append(outcome)
        else:
            rejected.append(outcome)  # type: ignore[arg-type]
    return BatchResult(accepted, rejected)


def validate_item(
    raw: Any,
    ctx: ValidationContext,
    index: int = 0,
    seen: set[tuple[str, str]] | None = None,
) -> Accepted | Rejected:
    """Apply rules 1–26 of reference §6.4 (rule 6 only when ``seen`` is given) to one item."""
    if type(raw) is not dict:
        return Rejected(index, None, R.INVALID_PAYLOAD, 1, priority=ctx.default_priority, raw=raw)
    get = raw.get
    msg_id = get("id")
    if msg_id is None or msg_id == "":
        return Rejected(index, None, R.MISSING_ID, 2, priority=ctx.default_priority, raw=raw)
    rules = _rules()
    if not rules.id.ok(msg_id):
        return Rejected(index, None, R.INVALID_ID, 3, priority=ctx.default_priority, raw=raw)

    # Rules 4–5: the owning tenant.
    tenant_id = get("tenant_id")
    if tenant_id is None or tenant_id == "":
        tenant_id = ctx.envelope_tenant or ctx.caller_tenant
        if tenant_id is None:
            return _early(index, msg_id, R.MISSING_TENANT, 4, raw, ctx)
    view = None
    if type(tenant_id) is str and (ctx.caller_tenant is None or tenant_id == ctx.caller_tenant):
        view = ctx.tenant(tenant_id)
    if view is None:
        return _early(index, msg_id, R.TENANT_NOT_FOUND, 5, raw, ctx)

    if seen is not None:
        key = (tenant_id, msg_id)
        if key in seen:
            return _rejected(index, msg_id, tenant_id, raw, ctx, R.DUPLICATE_ID, 6)
        seen.add(key)
    try:
        return _normalise(raw, index, msg_id, tenant_id, view, ctx, rules)
    except _Reject as refusal:
        return _rejected(index, msg_id, tenant_id, raw, ctx, *refusal.args)


class _Reject(Exception):
    """Internal: ``(reason, rule)`` of the first failing rule among 7–26."""


def _normalise(
    raw: dict[str, Any],
    index: int,
    msg_id: str,
    tenant_id: str,
    view: TenantView,
    ctx: ValidationContext,
    rules: _Rules,
) -> Accepted:
    """Rules 7–26 for an item whose id and tenant are settled; raises :class:`_Reject`.

    Type, length, pattern, choices and bounds come from ``rules`` (the message table); the
    rest (defaults, address parsing, the recipient total, reserved headers) is code here.
    """
    get = raw.get
    # Rules 7–8: the account, resolved once, at enqueue.
    account_id = get("account_id")
    if account_id is None or account_id == "":
        account_id = view.default_account_id
        if account_id is None:
            if len(view.account_ids) != 1:
                raise _Reject(R.MISSING_ACCOUNT, 7)
            (account_id,) = view.account_ids
        if account_id not in view.account_ids:
            raise _Reject(R.ACCOUNT_NOT_FOUND, 8)
    # A given account_id: the table's rule, then the tenant's accounts.
    elif not rules.account_id.ok(account_id) or account_id not in view.account_ids:
        raise _Reject(R.ACCOUNT_NOT_FOUND, 8)

    # Rules 9–10: the sender.
    sender = get("from")
    if sender is None or sender == "":
        raise _Reject(R.MISSING_FROM, 9)
    if not rules.sender.ok(sender):
        raise _Reject(R.invalid_address(sender), 10)
    sender_address = ctx._senders.get(sender)
    if sender_address is None:
        try:
            sender_address = parse_address(sender)
        except InvalidAddress:
            raise _Reject(R.invalid_address(sender), 10) from None
        ctx._senders[sender] = sender_address
    smtputf8 = sender_address.smtputf8

    # Rules 11–14: recipients and other address lists. Types are judged for every field
    # before any address is, so `invalid cc: …` wins over a bad address in `to`.
    to = get("to")
    if to is None or to == "" or (type(to) is list and all(map(_blank, to))):
        raise _Reject(R.MISSING_TO, 11)
    lists: dict[str, list[str]] = {}
    # Only the element's type here: an empty or malformed address is rule 13's, below.
    element_types = rules.address.types
    for name in _LIST_FIELDS:
        value = to if name == "to" else get(name)
        if value is None:
            continue
        if type(value) is list:
            for element in value:
                if type(element) not in element_types:
                    raise _Reject(R.invalid_list_field(name), 12)
            parts = value
        elif rules.address_text.ok(value):
            parts = split_address_list(value) if value else []
        else:
            raise _Reject(R.invalid_list_field(name), 12)
        if parts:
            lists[name] = parts
    if "to" not in lists:
        raise _Reject(R.MISSING_TO, 11)
    for name, parts in lists.items():
        stored: list[str] = []
        for element in parts:
            try:
                if address_needs_smtputf8(element):
                    smtputf8 = True
            except InvalidAddress:
                raise _Reject(R.invalid_address(element), 13) from None
            stored.append(element.strip(" \t"))
        lists[name] = stored  # same keys: replacing values while iterating is safe
    return_path = get("return_path")
    if return_path == "":
        return_path = None
    if return_path is not None:
        if not rules.return_path.ok(return_path):
            raise _Reject(R.invalid_address(return_path), 13)
        try:
            bare = parse_address(return_path)
        except InvalidAddress:
            raise _Reject(R.invalid_address(return_path), 13) from None
        if bare.display_name is not None:
            raise _Reject(R.invalid_address(return_path), 13)
        smtputf8 = smtputf8 or bare.smtputf8
        return_path = bare.addr_spec
    recipients = len(lists["to"]) + len(lists.get("cc", ())) + len(lists.get("bcc", ()))
    if recipients > rules.max_recipients:
        raise _Reject(R.too_many_recipients(recipients, rules.max_recipients), 14)

    # Rules 15–19: subject, body, content type.
    subject = get("subject")
    if subject is None or subject == "":
        raise _Reject(R.MISSING_SUBJECT, 15)
    if type(subject) not in rules.subject.types:
        raise _Reject(R.INVALID_SUBJECT, 16)
    if not rules.subject.ok(subject):  # the table's pattern: no CR or LF
        raise _Reject(R.INVALID_SUBJECT_HEADER, 17)
    body = get("body")
    if body is None:
        body = ""
    elif not rules.body.ok(body):
        raise _Reject(R.INVALID_BODY, 18)
    raw_content_type = get("content_type")
    if raw_content_type is None:
        content_type = "plain"
    else:
        # Case-insensitive: the table's choices are lower-case.
        lowered = raw_content_type.lower() if type(raw_content_type) is str else None
        if lowered is None or not rules.content_type.ok(lowered):
            raise _Reject(R.invalid_field_value("content_type", raw_content_type), 19)
        content_type = CONTENT_TYPES.get(lowered, lowered)

    # Rules 20–21: custom headers.
    headers = get("headers")
    kept_headers: dict[str, Any] | None = None
    if headers is not None:
        if type(headers) is not dict:
            raise _Reject(R.INVALID_HEADERS, 20)
        problem = _header_problem(headers, rules)
        if problem is not None:
            raise _Reject(R.invalid_header(problem), 21)
        kept_headers = {name: value for name, value in headers.items() if value is not None}

    # Rule 22: Message-ID.
    raw_message_id = get("message_id")
    given_message_id = None
    if raw_message_id is not None and raw_message_id != "":
        # The table says the form; the length without brackets is normalise_message_id's.
        if rules.message_id.ok(raw_message_id):
            given_message_id = normalise_message_id(raw_message_id)
        if given_message_id is None:
            raise _Reject(R.invalid_field_value("message_id", raw_message_id), 22)

    # Rules 23–25: priority, deferral, batch code.
    raw_priority = get("priority")
    if raw_priority is None:
        priority = ctx.default_priority
    else:
        parsed = parse_priority(raw_priority)
        if parsed is None:
            raise _Reject(R.invalid_field_value("priority", raw_priority), 23)
        priority = parsed
    raw_deferred = get("deferred_ts")
    deferred_ts = None
    if raw_deferred is not None:
        # The table's maximum (MAX_INT) also refuses inf: no time that far can be stored
        # (reference §4.4).
        if not rules.deferred_ts.ok(raw_deferred):
            raise _Reject(R.invalid_field_value("deferred_ts", raw_deferred), 24)
        deferred_ts = int(raw_deferred)
    batch_code = get("batch_code")
    if batch_code == "":
        batch_code = None
    elif batch_code is not None and (batch_code == "*" or not rules.batch_code.ok(batch_code)):
        # "*" (the whole-tenant marker of reference §0) fits the pattern but is no code.
        raise _Reject(R.invalid_field_value("batch_code", batch_code), 25)

    # Rule 26: attachments.
    raw_attachments = get("attachments")
    attachments: list[dict[str, Any]] | None = None
    if raw_attachments is not None:
        if type(raw_attachments) is not list:
            raise _Reject("invalid attachments: must be a list", 26)
        if raw_attachments:
            policy = ctx.attachment_policy(view)
            attachments = []
            for position, item in enumerate(raw_attachments):
                try:
                    attachments.append(check_attachment(item, policy))
                except AttachmentProblem as problem:
                    raise _Reject(R.invalid_attachment(position, problem.args[0]), 26) from None

    message: dict[str, Any] = {
        "id": msg_id,
        "tenant_id": tenant_id,
        "account_id": account_id,
        "from": sender.strip(" \t"),
    }
    message.update(lists)
    if return_path is not None:
        message["return_path"] = return_path
    message["subject"] = subject
    message["body"] = body
    message["content_type"] = content_type
    message["priority"] = priority
    if kept_headers:
        message["headers"] = kept_headers
    if given_message_id is not None:
        message["message_id"] = given_message_id
    if attachments:
        message["attachments"] = attachments
    if deferred_ts is not None:
        message["deferred_ts"] = deferred_ts
    if batch_code is not None:
        message["batch_code"] = batch_code
    if given_message_id is None:
        message_id = new_message_id(sender_address.ascii_domain)
    else:
        message_id = given_message_id
    return Accepted(
        index,
        msg_id,
        tenant_id,
        account_id,
        priority,
        deferred_ts,
        batch_code,
        message_id,
        given_message_id is None,
        smtputf8,
        message,
    )


def _rejected(
    index: int,
    msg_id: str,
    tenant_id: str,
    raw: dict[str, Any],
    ctx: ValidationContext,
    reason: str,
    rule: int,
) -> Rejected:
    account = raw.get("account_id")
    return Rejected(
        index,
        msg_id,
        reason,
        rule,
        tenant_id,
        account if type(account) is str and account else None,
        _priority_or(raw.get("priority"), ctx.default_priority),
        raw,
    )


def _early(
    index: int, msg_id: str, reason: str, rule: int, raw: dict[str, Any], ctx: ValidationContext
) -> Rejected:
    """A rejection before the tenant is known: never recorded (reference §6.9)."""
    return Rejected(
        index,
        msg_id,
        reason,
        rule,
        None,
        None,
        _priority_or(raw.get("priority"), ctx.default_priority),
        raw,
    )


def _blank(element: Any) -> bool:
    return type(element) is str and not element.strip(" \t")


def _priority_or(value: Any, default: int) -> int:
    if value is None:
        return default
    parsed = parse_priority(value)
    return default if parsed is None else parsed


def _header_problem(headers: dict[str, Any], rules: _Rules) -> Any:
    """The first offending header name (as given), or ``None`` when all are valid (reference §6.2, §7).

    Names and values follow the table (``headers.keys``, ``headers.values``); a ``null``
    value is skipped and the reserved names are refused here.
    """
    name_ok = rules.header_name.ok
    value_rules = rules.header_values
    for name, value in headers.items():
        if not name_ok(name) or name.lower() in RESERVED_HEADERS:
            return name
        if value is None:
            continue
        for rule in value_rules:
            if rule.ok(value):
                break
        else:
            return name
    return None
