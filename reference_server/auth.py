"""Bearer tokens: generation, hashing, verification with a short cache, and revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from .errors import InvalidArgument, PermissionDenied, Unauthenticated
from .store import Store, TokenRecord

PREFIXES = {"worker": "fwt_", "user": "fut_", "stream": "fst_"}
ADMIN_PREFIX = "fat_"
STREAM_TOKEN_MAX_TTL = 900
STREAM_TOKEN_DEFAULT_TTL = 300
# RFC 6750 §2.1 b64token. Anything else (spaces, non-ASCII, bytes that are not UTF-8 and reach us
# as surrogates) is malformed: refused as 401 before it is hashed.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def generate_token(kind: str) -> str:
    """A random, prefixed token (256 bits of entropy); the prefix tells humans what it is."""
    prefix = ADMIN_PREFIX if kind == "admin" else PREFIXES[kind]
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    """SHA-256: enough for random 256-bit tokens (no dictionary to guess from), and cheap
    enough to verify on every request."""
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent.

    A present but malformed header is an authentication failure, not an absent one."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN68.fullmatch(token):
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token


def well_formed(token: str) -> bool:
    """Whether `token` has the syntax of a bearer token (for tokens taken from a URL)."""
    return _TOKEN68.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an admin, or a token of one tenant (with its kind and scope)."""

    token_id: uuid.UUID | None
    kind: str  # admin | user | worker | stream
    tenant_id: uuid.UUID | None = None
    tenant_slug: str | None = None
    scope_workflow_id: uuid.UUID | None = None
    scope_task_id: uuid.UUID | None = None
    expires_at: dt.datetime | None = None
    issued_by: uuid.UUID | None = None  # stream tokens: the user token that minted them

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @classmethod
    def from_record(cls, record: TokenRecord) -> Principal:
        return cls(
            token_id=record.id,
            kind=record.kind,
            tenant_id=record.tenant_id,
            tenant_slug=record.tenant_slug,
            scope_workflow_id=record.scope_workflow_id,
            scope_task_id=record.scope_task_id,
            expires_at=record.expires_at,
            issued_by=record.issued_by,
        )

    def seconds_left(self) -> float | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - dt.datetime.now(dt.UTC)).total_seconds()


ADMIN = Principal(token_id=None, kind="admin")


class Authenticator:
    """Verifies tokens against the store. Valid principals are cached for `cache_ttl` seconds so
    the gRPC hot path does not query PostgreSQL per event; revocations evict them at once on this
    instance and within the recheck interval elsewhere."""

    def __init__(self, store: Store, admin_token: str, *, cache_ttl: float = 30.0) -> None:
        self._store = store
        self._admin_hash = hash_token(admin_token)
        self._ttl = cache_ttl
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        # Revoked ids must outlive the cached principals they override (cache_ttl), no longer:
        # after that the store answers. So the set stays small however many tokens are revoked.
        self._revoked: dict[uuid.UUID, float] = {}

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("a bearer token is required")
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return ADMIN
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            record = await self._store.token_by_hash(digest)
            if record is None:
                raise Unauthenticated("unknown token")
            if record.revoked_at is not None:
                self.revoked(record.id)
                raise Unauthenticated("the token has been revoked")
            principal = Principal.from_record(record)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        if principal.token_id in self._revoked or principal.issued_by in self._revoked:
            self._cache.pop(digest, None)
            raise Unauthenticated("the token has been revoked")
        left = principal.seconds_left()
        if left is not None and left <= 0:
            self._cache.pop(digest, None)
            raise Unauthenticated("the token has expired")
        return principal

    def revoked(self, token_id: uuid.UUID) -> None:
        """Record a revocation (from this instance, a bus notice or the store poll)."""
        now = time.monotonic()
        self._revoked[token_id] = now
        if len(self._revoked) > 10_000:
            horizon = now - 2 * self._ttl
            self._revoked = {k: t for k, t in self._revoked.items() if t > horizon}

    async def issue(
        self,
        tenant_id: uuid.UUID,
        kind: str,
        ttl_seconds: int | None,
        *,
        scope_workflow_id: uuid.UUID | None = None,
        scope_task_id: uuid.UUID | None = None,
        issuer: Principal | None = None,
    ) -> tuple[uuid.UUID, str, dt.datetime | None]:
        """A new token. A stream token minted with a user token (`issuer`) dies with it: it
        expires no later, and revoking the user token revokes it."""
        if kind not in PREFIXES:
            raise InvalidArgument(f"kind must be one of {', '.join(sorted(PREFIXES))}")
        if kind == "stream":
            ttl_seconds = STREAM_TOKEN_DEFAULT_TTL if ttl_seconds is None else ttl_seconds
            if ttl_seconds > STREAM_TOKEN_MAX_TTL:
                raise InvalidArgument(f"stream tokens live at most {STREAM_TOKEN_MAX_TTL} s")
            if scope_workflow_id is None and scope_task_id is None:
                raise InvalidArgument("a stream token is scoped to one workflow or task")
        if ttl_seconds is not None and ttl_seconds < 1:
            raise InvalidArgument("ttlSeconds must be at least 1")
        token = generate_token(kind)
        expires_at = (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl_seconds)
            if ttl_seconds is not None
            else None
        )
        if issuer is not None and issuer.expires_at is not None and expires_at is not None:
            expires_at = min(expires_at, issuer.expires_at)
        token_id = await self._store.insert_token(
            tenant_id=tenant_id,
            kind=kind,
            token_hash=hash_token(token),
            expires_at=expires_at,
            scope_workflow_id=scope_workflow_id,
            scope_task_id=scope_task_id,
            issued_by=issuer.token_id if issuer is not None else None,
        )
        return token_id, token, expires_at


def require_tenant_access(principal: Principal, tenant_slug: str) -> None:
    """Management calls on a tenant: its user tokens, or the admin token."""
    if principal.is_admin:
        return
    if principal.kind != "user":
        raise PermissionDenied(f"a {principal.kind} token cannot call the management API")
    if principal.tenant_slug != tenant_slug:
        raise PermissionDenied("the token belongs to another tenant")
