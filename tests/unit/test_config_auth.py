"""Settings sources, secrets policy, JWT algorithms and the users file."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tradewire import ConfigError, Level, Settings
from tradewire.auth.tokens import AuthHandler
from tradewire.auth.users import UserStore
from tradewire.config import (
    MIN_SECRET_BITS,
    JwtSecret,
    Mode,
    SecretSource,
    entropy_estimate,
    resolve_jwt_secret,
    secret_weakness,
)
from tradewire.errors import AuthError
from tradewire.protocol.codes import ErrorCode


def test_environment_and_flags_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags beat the environment, which beats the TOML file; lists accept commas."""
    defaults = Settings()
    assert (defaults.host, defaults.ws_port, defaults.http_port) == ("127.0.0.1", 8765, 8080)
    assert (defaults.max_connections, defaults.heartbeat_interval) == (1000, 30)
    toml = tmp_path / "tw.toml"
    toml.write_text(
        'ws_port = 9001\nhttp_port = 9002\nmax_connections = 7\nallowed_origins = ["https://t.example"]\n'
    )
    monkeypatch.setenv("TRADEWIRE_HTTP_PORT", "9100")
    monkeypatch.setenv("TRADEWIRE_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    s = Settings.load(toml, max_connections=3)
    assert (s.ws_port, s.http_port, s.max_connections) == (9001, 9100, 3)
    assert s.allowed_origins == ["https://a.example", "https://b.example"]


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Settings.load(tmp_path / "absent.toml")


def test_production_refuses_missing_short_or_low_entropy_secret(tmp_path: Path) -> None:
    """Production needs >= 32 bytes *and* entropy: "a"*40 or a repeated word are refused."""
    for weak in (None, "short", "s" * 32, "a" * 40, "password" * 5, "0123456789" * 4):
        with pytest.raises(ConfigError):
            resolve_jwt_secret(Settings(mode=Mode.PRODUCTION, jwt_secret=weak, data_dir=tmp_path))
    strong = secrets.token_hex(16)  # 32 random hex characters: the weakest secret we accept
    resolved = resolve_jwt_secret(Settings(mode=Mode.PRODUCTION, jwt_secret=strong, data_dir=tmp_path))
    assert resolved == JwtSecret(strong.encode(), SecretSource.CONFIGURED, None)


def test_dev_mode_accepts_a_weak_secret_but_reports_why(tmp_path: Path) -> None:
    """Dev mode starts with "abc" (the server logs a loud warning); the reason is carried along."""
    resolved = resolve_jwt_secret(Settings(jwt_secret="abc", data_dir=tmp_path))
    assert resolved.value == b"abc"
    assert resolved.weakness is not None and "32 bytes" in resolved.weakness
    assert "entropy" in (secret_weakness(b"password" * 5) or "")
    assert secret_weakness(secrets.token_urlsafe(32).encode()) is None


def test_entropy_estimate_sees_repeats_and_sequences() -> None:
    assert entropy_estimate(b"a" * 40) == 0
    assert entropy_estimate(b"password" * 5) < MIN_SECRET_BITS
    assert entropy_estimate(b"abcdefghijklmnopqrstuvwxyz012345") < MIN_SECRET_BITS
    assert entropy_estimate(b"qwerty1234567890qwerty1234567890") < MIN_SECRET_BITS
    assert min(entropy_estimate(secrets.token_hex(16).encode()) for _ in range(200)) >= MIN_SECRET_BITS


def test_dev_mode_generates_a_private_secret_once_then_reuses_it(tmp_path: Path) -> None:
    first = resolve_jwt_secret(Settings(data_dir=tmp_path))
    second = resolve_jwt_secret(Settings(data_dir=tmp_path))
    assert (first.source, second.source) == (SecretSource.GENERATED, SecretSource.REUSED)
    assert first.value == second.value and first.value is not None and len(first.value) >= 32
    assert first.weakness is None
    assert (tmp_path / ".jwt-dev-secret").stat().st_mode & 0o077 == 0


def test_issuer_and_audience_are_enforced_when_configured(tmp_path: Path) -> None:
    strict = AuthHandler.from_settings(
        Settings(jwt_secret="k" * 40, jwt_issuer="tw", jwt_audience="desk", data_dir=tmp_path)
    )
    token, _ = strict.mint("u", Level.BASIC)
    assert strict.verify(token).user_id == "u"
    lax = AuthHandler.from_settings(Settings(jwt_secret="k" * 40, data_dir=tmp_path))
    with pytest.raises(AuthError) as exc:
        strict.verify(lax.mint("u", Level.BASIC)[0])
    assert exc.value.code is ErrorCode.INVALID_TOKEN


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_asymmetric_algorithms_verify_with_the_public_key(tmp_path: Path, algorithm: str) -> None:
    private = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_pem)
    (tmp_path / "key.pem").write_bytes(private_pem)
    settings = Settings(jwt_algorithm=algorithm, jwt_public_key_file=tmp_path / "pub.pem", data_dir=tmp_path)
    verifier = AuthHandler.from_settings(settings)
    token = jwt.encode(
        {"sub": "desk", "exp": int(time.time()) + 600, "level": "premium"}, private_pem, algorithm=algorithm
    )
    principal = verifier.verify(token)
    assert principal.level is Level.PREMIUM
    with pytest.raises(ConfigError):
        verifier.mint("x", Level.BASIC)  # no private key configured
    signer = AuthHandler.from_settings(
        settings.model_copy(update={"jwt_private_key_file": tmp_path / "key.pem"})
    )
    assert verifier.verify(signer.mint("y", Level.ADMIN)[0]).user_id == "y"


def test_hs256_token_is_rejected_by_an_rs256_server(tmp_path: Path) -> None:
    private = rsa.generate_private_key(65537, 2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_pem)
    verifier = AuthHandler.from_settings(
        Settings(jwt_algorithm="RS256", jwt_public_key_file=tmp_path / "pub.pem", data_dir=tmp_path)
    )
    hs = AuthHandler.from_settings(Settings(jwt_secret="k" * 40, data_dir=tmp_path)).mint("x", Level.ADMIN)[0]
    with pytest.raises(AuthError) as exc:
        verifier.verify(hs)
    assert exc.value.message == "token algorithm is not accepted"


def test_user_store_hashes_and_verifies(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "correct horse battery", Level.TRADER)
    text = (tmp_path / "users.json").read_text()
    assert "correct horse" not in text and "$argon2id$" in text
    user = store.authenticate("alice", "correct horse battery")
    assert user is not None and user.level is Level.TRADER
    assert store.authenticate("alice", "wrong password!") is None
    assert store.authenticate("mallory", "correct horse battery") is None
    with pytest.raises(ConfigError):
        store.add("bob", "short", Level.BASIC)


def test_stream_history_is_configurable_per_stream(tmp_path: Path) -> None:
    from tradewire import Stream, WebSocketAPIServer

    settings = Settings(
        jwt_secret="k" * 40, data_dir=tmp_path, stream_history_size=50, stream_history={"signals": 7}
    )
    from tradewire.streams.broker_memory import MemoryBroker

    broker = WebSocketAPIServer(settings=settings).broker
    assert isinstance(broker, MemoryBroker)
    histories = broker.histories
    assert histories[Stream.SIGNALS].max_size == 7
    assert histories[Stream.MARKET_DATA].max_size == 50
    with pytest.raises(ValueError, match="unknown streams"):
        Settings(stream_history={"bogus": 1})


def test_token_lifetime_and_claims_are_bounded_before_use(tmp_path: Path) -> None:
    """exp in milliseconds, exp 10**20, a non-numeric exp, or a sub that replies cannot carry
    (lone surrogate, control or bidi characters, too long) are invalid_token, not accepted."""
    auth = AuthHandler.from_settings(Settings(jwt_secret=secrets.token_hex(32), data_dir=tmp_path))
    key = auth._verify_key  # the HS256 secret, to sign hostile claims
    now = int(time.time())
    hostile = {
        "exp in ms": {"sub": "kate", "exp": (now + 600) * 1000},
        "exp 10**20": {"sub": "kate", "exp": 10**20},
        "exp as text": {"sub": "kate", "exp": str(now + 600)},
        "lone surrogate": {"sub": "kate\ud83d", "exp": now + 600},
        "control char": {"sub": "kate\x00", "exp": now + 600},
        "bidi override": {"sub": "\u202eetak", "exp": now + 600},
        "too long": {"sub": "k" * 129, "exp": now + 600},
        "level list": {"sub": "kate", "exp": now + 600, "level": ["admin"]},
    }
    for name, claims in hostile.items():
        with pytest.raises(AuthError) as exc:
            auth.verify(jwt.encode(claims, key, algorithm="HS256"))
        assert exc.value.code is ErrorCode.INVALID_TOKEN, name
    week = auth.verify(jwt.encode({"sub": "kate", "exp": now + 7 * 86400 - 10}, key, algorithm="HS256"))
    assert week.user_id == "kate"
    with pytest.raises(ConfigError):
        auth.mint("kate", Level.BASIC, ttl=auth.max_lifetime + 1)


async def test_start_up_log_says_where_the_secret_came_from_and_warns_if_weak(tmp_path: Path) -> None:
    """Generated now vs reused from the data directory; a weak dev secret is a loud warning."""
    from structlog.testing import capture_logs

    from tradewire import WebSocketAPIServer

    async def events(**overrides: object) -> list[dict[str, object]]:
        server = WebSocketAPIServer(settings=Settings(data_dir=tmp_path, ws_port=0, **overrides))  # type: ignore[arg-type]
        with capture_logs() as logs:
            await server.startup_embedded()
        await server.stop()
        return [e for e in logs if str(e["event"]).startswith("auth.")]

    first, second = await events(), await events()
    assert [e["detail"] for e in first] == ["dev mode: new JWT secret generated"]
    assert [e["detail"] for e in second] == ["dev mode: reusing the JWT secret"]
    weak = await events(jwt_secret="abc")
    assert [e["event"] for e in weak] == ["auth.weak_secret"]
    assert "32 bytes" in str(weak[0]["reason"])
    assert await events(jwt_secret=secrets.token_urlsafe(32)) == []


def test_user_names_follow_the_token_subject_rule(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    for name in ("", "k" * 129, "tab\there", "\u202eevil"):
        with pytest.raises(ConfigError):
            store.add(name, "correct horse battery", Level.BASIC)
    store.add("Zoë Smith", "correct horse battery", Level.BASIC)
