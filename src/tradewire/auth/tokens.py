"""JWT verification and minting (DESIGN §4).

HS256 with a shared secret by default; RS256/ES256 verify with a public key (and mint only when a
private key is configured). ``exp`` is required; ``iss``/``aud`` are checked when configured. The
accepted algorithm list holds exactly the configured algorithm, so ``alg: none`` and algorithm
confusion (an RS256 public key used as an HS256 secret) are rejected by PyJWT itself.

Claims that reach replies, logs and saved sessions are checked here, before anything uses them,
so a validly signed token can still be refused but never half-applied: ``sub`` must be printable
text (no control, format or surrogate characters) of at most 128 characters, and ``exp`` a number
at most ``max_lifetime`` seconds ahead (an ``exp`` in milliseconds would otherwise never expire).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import jwt
from jwt.types import Options
from pydantic import SecretStr

from tradewire.auth.permissions import Level, Permission, permissions_for
from tradewire.config import JwtAlgorithm, SecretSource, Settings, resolve_jwt_secret
from tradewire.errors import AuthError, ConfigError
from tradewire.protocol.codes import ErrorCode

LEEWAY_SECONDS = 5
MAX_USER_ID = 128
DEFAULT_MAX_LIFETIME = 7 * 24 * 3600  # Settings.max_token_lifetime


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user as seen by handlers."""

    user_id: str
    level: Level
    permissions: frozenset[Permission]
    expires_at: float  # epoch seconds (the token's ``exp``)


class AuthHandler:
    """Verifies and mints JWTs for one configuration."""

    def __init__(
        self,
        algorithm: JwtAlgorithm,
        verify_key: Any,
        signing_key: Any | None,
        issuer: str | None = None,
        audience: str | None = None,
        token_ttl: int = 3600,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> None:
        self.algorithm = algorithm
        self._verify_key = verify_key
        self._signing_key = signing_key
        self._issuer = issuer
        self._audience = audience
        self.token_ttl = token_ttl
        self.max_lifetime = max_lifetime  # seconds an accepted exp may lie ahead of now
        self.secret_source: SecretSource | None = None  # HS256: where the secret came from
        self.secret_weakness: str | None = None  # HS256: why the secret is weak (dev mode only)
        # Names the verification key without revealing it, so a token minted with another key
        # (e.g. another data directory's dev secret) can be told apart from a forged one.
        self.key_fingerprint = key_fingerprint(verify_key)

    def describe(self) -> dict[str, str | None]:
        """Which key and issuer tokens must match: safe to show (a fingerprint, not the key)."""
        return {
            "algorithm": self.algorithm.value,
            "key_fingerprint": self.key_fingerprint,
            "issuer": self._issuer,
        }

    @classmethod
    def from_settings(cls, settings: Settings, jwt_secret: str | None = None) -> AuthHandler:
        """Build from settings; ``jwt_secret`` (the seed's constructor argument) wins over settings."""
        if settings.jwt_algorithm is JwtAlgorithm.HS256:
            resolved = resolve_jwt_secret(
                settings
                if jwt_secret is None
                else settings.model_copy(update={"jwt_secret": SecretStr(jwt_secret)})
            )
            handler = cls(
                settings.jwt_algorithm,
                resolved.value,
                resolved.value,
                settings.jwt_issuer,
                settings.jwt_audience,
                settings.token_ttl,
                settings.max_token_lifetime,
            )
            handler.secret_source = resolved.source
            handler.secret_weakness = resolved.weakness
            return handler
        if settings.jwt_public_key_file is None:
            raise ConfigError(f"{settings.jwt_algorithm} requires TRADEWIRE_JWT_PUBLIC_KEY_FILE")
        private = _read_optional(settings.jwt_private_key_file)
        return cls(
            settings.jwt_algorithm,
            settings.jwt_public_key_file.read_bytes(),
            private,
            settings.jwt_issuer,
            settings.jwt_audience,
            settings.token_ttl,
            settings.max_token_lifetime,
        )

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` otherwise (never the raw PyJWT text)."""
        options: Options = {"require": ["exp", "sub"], "verify_aud": self._audience is not None}
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm.value],
                issuer=self._issuer,
                audience=self._audience,
                options=options,
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(ErrorCode.TOKEN_EXPIRED, "token has expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(ErrorCode.INVALID_TOKEN, f"token lacks the '{exc.claim}' claim") from exc
        except (jwt.InvalidSignatureError, jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            message = (
                f"{_reason(exc)}: this server verifies {self.algorithm.value} with the key whose "
                f"fingerprint is {self.key_fingerprint} (issuer {self._issuer or 'not checked'}); "
                "`tradewire token` prints the fingerprint it signs with"
            )
            raise AuthError(ErrorCode.INVALID_TOKEN, message, self.describe()) from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(ErrorCode.INVALID_TOKEN, _reason(exc)) from exc
        return _principal(claims, time.time() + self.max_lifetime + LEEWAY_SECONDS)

    def mint(self, user_id: str, level: Level, ttl: int | None = None) -> tuple[str, float]:
        """A signed token for ``user_id`` and its expiry (epoch seconds)."""
        if self._signing_key is None:
            raise ConfigError("no signing key configured (set TRADEWIRE_JWT_PRIVATE_KEY_FILE)")
        lifetime = ttl if ttl is not None else self.token_ttl
        if lifetime > self.max_lifetime:
            raise ConfigError(f"ttl {lifetime} s exceeds max_token_lifetime ({self.max_lifetime} s)")
        now = int(time.time())
        exp = now + lifetime
        claims: dict[str, Any] = {"sub": user_id, "level": level.value, "iat": now, "exp": exp}
        if self._issuer:
            claims["iss"] = self._issuer
        if self._audience:
            claims["aud"] = self._audience
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm.value), float(exp)


def _principal(claims: dict[str, Any], latest_exp: float) -> Principal:
    """The principal of verified ``claims``; every claim a reply or a saved session uses is
    checked first, so a refused token changes nothing."""
    user_id = claims.get("sub")
    if not valid_user_id(user_id):
        raise AuthError(ErrorCode.INVALID_TOKEN, f"token 'sub' must be 1..{MAX_USER_ID} printable characters")
    try:
        level = Level(claims.get("level", Level.BASIC.value))
    except (ValueError, TypeError) as exc:
        raise AuthError(ErrorCode.INVALID_TOKEN, "token 'level' is not a known level") from exc
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise AuthError(ErrorCode.INVALID_TOKEN, "token 'exp' must be a number")
    if exp > latest_exp:
        raise AuthError(ErrorCode.INVALID_TOKEN, "token lifetime exceeds the server's maximum")
    return Principal(user_id, level, permissions_for(level), float(exp))


def valid_user_id(value: object) -> TypeGuard[str]:
    """A user id fit for replies and logs: 1..128 printable characters (``str.isprintable`` is
    False for control, format — e.g. bidi overrides —, surrogate and unassigned code points)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_USER_ID and value.isprintable()


def _reason(exc: jwt.InvalidTokenError) -> str:
    """A short, fixed description per failure class: no library text reaches the client."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "token algorithm is not accepted"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token is not yet valid"
    if isinstance(exc, jwt.DecodeError):
        return "token is malformed"
    return "token is invalid"


def key_fingerprint(key: Any) -> str:
    """First 8 hex digits of a domain-separated SHA-256 of the key: enough to tell two keys
    apart, useless for guessing one (a token already allows offline guessing)."""
    material = key if isinstance(key, bytes) else str(key).encode()
    return hashlib.sha256(b"tradewire key fingerprint\0" + material).hexdigest()[:8]


def _read_optional(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None
