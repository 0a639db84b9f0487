"""The dispatcher's exception tree: everything raised on purpose derives from ``DispatcherError``."""

from __future__ import annotations


class DispatcherError(Exception):
    """Raised when anything in the dispatcher fails on purpose; the root of every error here."""


class InvalidInput(DispatcherError, ValueError):
    """Raised when a caller passes input that can never succeed; nothing was written."""


class InvalidEventType(InvalidInput):
    """Raised when an event type or a subscription pattern is empty or malformed."""


class PayloadNotSerializable(InvalidInput):
    """Raised when event data cannot be encoded as JSON."""


class PayloadTooLarge(InvalidInput):
    """Raised when an encoded event is larger than ``max_payload_bytes``."""


class InvalidSchema(InvalidInput):
    """Raised when an event type's schema is not valid JSON Schema, or its example does not match it."""


class DataMismatch(InvalidInput):
    """Raised when an event's data does not match the schema registered for its type; nothing was written."""


class UnregisteredEventType(InvalidEventType):
    """Raised when an event's type is not registered while ``event_types_require_registered`` is on."""


class InvalidURL(InvalidInput):
    """Raised when an endpoint URL is not an absolute http(s) URL."""


class UnsafeTarget(InvalidInput):
    """Raised when an endpoint URL points at a loopback, private or otherwise non-global address."""


class InvalidTemplate(InvalidInput):
    """Raised when a chat robot's message template does not parse (bad placeholder, filter or brace)."""


class NotFound(DispatcherError, LookupError):
    """Raised when a looked-up record does not exist."""


class EndpointNotFound(NotFound):
    """Raised when no endpoint has the given id."""


class EventTypeNotFound(NotFound):
    """Raised when no event type of the given name is registered."""


class TenantNotFound(NotFound):
    """Raised when a tenant id names no tenant (an endpoint or event of it, or the tenant itself)."""


class QuotaExceeded(DispatcherError):
    """Raised when events would take a tenant past its ``max_events_per_s`` or ``max_events_per_day``;
    nothing was written. ``retry_after_s``: when the limit's window ends."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeliveryNotFound(NotFound):
    """Raised when no delivery has the given id (or it has expired)."""


class EventNotFound(NotFound):
    """Raised when no event has the given id (or it has expired)."""


class InvalidState(DispatcherError):
    """Raised when an operation does not apply to a record in its current state (e.g. replaying a delivered one)."""


class InvalidCursor(InvalidInput):
    """Raised when a poll cursor is malformed or belongs to another endpoint."""


class CursorExpired(DispatcherError):
    """Raised when a poll cursor points before the oldest entry an endpoint's log still holds (trimmed away)."""

    def __init__(self, message: str, resume_cursor: str) -> None:
        super().__init__(message)
        self.resume_cursor = resume_cursor


class NotPollable(InvalidState):
    """Raised when an endpoint's log is read but the endpoint is neither of kind ``poll`` nor ``also_poll``."""


class PullError(DispatcherError):
    """Raised when the pull client gets an answer that retrying cannot fix (400, 401, 403, 404, 409)."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ConfigError(DispatcherError):
    """Raised when the settings cannot work: a process asked to start in a configuration it refuses."""


class StoreError(DispatcherError):
    """Raised when Redis answers an operation with an error (out of memory, a read-only replica, ...)."""


class StoreUnavailable(StoreError):
    """Raised when Redis cannot be reached; the operation did not happen."""


class NotReplicated(StoreError):
    """Raised when ``enqueue_durability`` is ``replicated`` and too few replicas confirmed the write in time.

    The event is on the primary and may still be delivered, but it was not acknowledged: enqueue it again
    with the same idempotency key to be sure it exists exactly once."""


class BrokerUnavailable(DispatcherError):
    """Raised when the Celery broker cannot be reached to publish a kick."""


class DeliveryError(DispatcherError):
    """Raised by the HTTP engine when an attempt gets no answer; its message is the attempt's recorded error.

    The delivery loop catches it and records the attempt; callers of the dispatcher never see it.
    ``retryable`` tells whether the retry schedule applies.
    """

    retryable: bool = True


class RetryableDeliveryError(DeliveryError):
    """Raised when an attempt failed in a way that may succeed later (no answer in time, no connection)."""

    retryable = True


class AttemptTimeout(RetryableDeliveryError):
    """Raised when the receiver did not answer within ``timeout_s`` (or could not be connected to in time)."""


class ConnectionFailed(RetryableDeliveryError):
    """Raised when no connection could be made: refused, unreachable, a name that does not resolve, TLS."""


class ReceiverProtocolError(RetryableDeliveryError):
    """Raised when the answer is not HTTP the engine can read, or the connection broke in the middle of it."""


class PermanentDeliveryError(DeliveryError):
    """Raised when an attempt failed in a way retries cannot fix (a target the SSRF guard refuses)."""

    retryable = False


class TargetRefused(PermanentDeliveryError):
    """Raised when the endpoint's address is loopback, private or otherwise not allowed (the SSRF guard)."""


class VerificationError(DispatcherError):
    """Raised when an incoming webhook fails verification; ``http_status`` is the answer a receiver should give."""

    http_status: int = 400


class MissingHeader(VerificationError):
    """Raised when a webhook-id, webhook-timestamp or webhook-signature header (or svix-*) is absent or empty."""

    http_status = 400


class MalformedHeader(MissingHeader):
    """Raised when a webhook header is present but unusable (a webhook-timestamp that is not an integer)."""

    http_status = 400


class RawBodyRequired(VerificationError, TypeError):
    """Raised when ``verify()`` is given a dict, ``None`` or another object instead of the raw body (bytes or str).

    Still a ``TypeError`` too, so code written when it was only that keeps catching it. ``http_status`` is
    400, although it is the receiver's code that passed the wrong object: fix the call, not the request.
    """

    http_status = 400


class InvalidSecret(VerificationError, ValueError):
    """Raised when a secret given to ``verify()`` is not ``whsec_`` + base64 (or raw key bytes), or none is given.

    A receiver's configuration error, not the sender's: ``http_status`` is 500, so the sender retries
    and the message verifies once the secret is fixed (a 4xx would tell it the request was at fault).
    Also a ``ValueError``, what ``verify()`` raised for a bad secret before.
    """

    http_status = 500


class InvalidSignature(VerificationError):
    """Raised when no v1 signature in webhook-signature matches the body under any of the secrets."""

    http_status = 401


class TimestampTooOld(VerificationError):
    """Raised when a correctly signed webhook-timestamp is further in the past than the tolerance."""

    http_status = 401


class TimestampTooNew(VerificationError):
    """Raised when a correctly signed webhook-timestamp is further in the future than the tolerance."""

    http_status = 401


class InvalidPayload(VerificationError):
    """Raised when a correctly signed body is not a JSON object or array."""

    http_status = 400


class AlreadyProcessed(VerificationError):
    """Raised when a verified webhook-id has been seen before (a retry or a replay); answer 2xx, do not redo it."""

    http_status = 200
