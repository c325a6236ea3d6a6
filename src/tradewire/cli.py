"""``tradewire`` command line: ``serve``, ``token``, ``users add``, ``data import``.

``serve`` takes one flag per :class:`~tradewire.config.Settings` field (``--ws-port``,
``--jwt-secret``, ...), generated from the model so flags, environment names and TOML keys cannot
disagree. The other commands take only their own options plus the few settings that decide what
they act on (``--config``, ``--data-dir``, ...): everything else still comes from the environment
and the TOML file, so they use the same secret and files as the server they serve.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from tradewire.auth.permissions import Level
from tradewire.auth.tokens import AuthHandler
from tradewire.auth.users import UserStore
from tradewire.config import DEV_SECRET_FILE, SecretSource, Settings
from tradewire.engine.datasets import import_file
from tradewire.engine.storage.database import Database, Dataset
from tradewire.errors import ConfigError
from tradewire.logs import configure_logging
from tradewire.protocol.wire import iso_time

MAX_SYMBOL = 32


def _add_settings_flags(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """``--config`` and one flag per setting (all of them, or only ``names``)."""
    parser.add_argument("--config", type=Path, help="TOML file with settings (TRADEWIRE_CONFIG_FILE)")
    for name, field in Settings.model_fields.items():
        if names is not None and name not in names:
            continue
        flag = "--" + name.replace("_", "-")
        env = "TRADEWIRE_" + name.upper()
        parser.add_argument(
            flag,
            dest=f"setting_{name}",
            metavar=name.upper(),
            default=None,
            help=field.description or f"({env})",
        )


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    return Settings.load(getattr(args, "config", None), **overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    configure_logging(settings.log_format, settings.log_level)
    from tradewire.cluster.workers import check_workers, run_workers

    check_workers(settings)
    if settings.workers > 1:
        return run_workers(settings, _serve_one)
    return _serve_one(settings)


def _serve_one(settings: Settings) -> int:
    from tradewire.runner import serve

    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:
        asyncio.run(serve(settings))
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    auth = AuthHandler.from_settings(settings)
    token, _ = auth.mint(args.user, Level(args.level), args.ttl)
    sys.stdout.write(token + "\n")
    if not args.quiet:
        sys.stderr.write(f"tradewire: signed with {_key_origin(settings, auth)}\n")
    return 0


def _key_origin(settings: Settings, auth: AuthHandler) -> str:
    """Which key signed (fingerprint, never the key), its origin, and the issuer."""
    key = auth.describe()
    if auth.secret_source is SecretSource.CONFIGURED:
        origin = "TRADEWIRE_JWT_SECRET"
    elif auth.secret_source is not None:
        origin = f"the dev secret in {settings.data_dir / DEV_SECRET_FILE}"
    else:
        origin = str(settings.jwt_private_key_file)
    issuer = key["issuer"] or "none"
    return f"{key['algorithm']} key {key['key_fingerprint']} ({origin}), issuer {issuer}"


def _cmd_users_add(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass()
    UserStore(settings.users_path).add(args.name, password, Level(args.level))
    sys.stderr.write(f"user {args.name!r} ({args.level}) written to {settings.users_path}\n")
    return 0


def _cmd_data_import(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    configure_logging(settings.log_format, "warning")
    dataset, created = asyncio.run(_import_file(settings, args.file, args.symbol, args.kind))
    sys.stdout.write(
        json.dumps(
            {
                "dataset_id": dataset.id,
                "symbol": dataset.symbol,
                "kind": dataset.kind,
                "rows": dataset.rows,
                "start_time": iso_time(dataset.start_ts) if dataset.start_ts is not None else None,
                "end_time": iso_time(dataset.end_ts) if dataset.end_ts is not None else None,
                "sha256": dataset.sha256,
                "created": created,
            }
        )
        + "\n"
    )
    return 0


async def _import_file(settings: Settings, path: Path, symbol: str, kind: str | None) -> tuple[Dataset, bool]:
    if not 1 <= len(symbol) <= MAX_SYMBOL:
        raise ValueError(f"symbol must be 1..{MAX_SYMBOL} characters")
    db = Database(settings.database)
    await db.start()
    try:
        return await import_file(db, path, symbol, kind)
    finally:
        await db.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradewire", description="Real-time gateway for trading systems")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the WebSocket and HTTP servers")
    _add_settings_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    levels = [level.value for level in Level]
    token = commands.add_parser("token", help="print a JWT signed with the configured key")
    token.add_argument("--user", required=True)
    token.add_argument("--level", choices=levels, default=Level.BASIC.value)
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--quiet", action="store_true", help="do not print which key signed (stderr)")
    _add_settings_flags(token, ("data_dir", "jwt_issuer", "jwt_audience", "max_token_lifetime"))
    token.set_defaults(func=_cmd_token)

    users = commands.add_parser("users", help="manage the users file")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    add = users_commands.add_parser("add", help="create or replace a user (password hashed with argon2id)")
    add.add_argument("name")
    add.add_argument("--level", choices=levels, default=Level.BASIC.value)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _add_settings_flags(add, ("data_dir", "users_file"))
    add.set_defaults(func=_cmd_users_add)

    data = commands.add_parser("data", help="market data in the engine database")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    load = data_commands.add_parser("import", help="import an OHLCV or trade-tick CSV as a dataset")
    load.add_argument("file", type=Path)
    load.add_argument("--symbol", required=True)
    load.add_argument("--kind", choices=["ohlcv", "trades"], help="default: detected from the header")
    _add_settings_flags(load, ("data_dir", "database_url"))
    load.set_defaults(func=_cmd_data_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, ValidationError) as exc:
        sys.stderr.write(f"tradewire: configuration error: {exc}\n")
        return 2
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"tradewire: {exc}\n")
        return 1
    except SQLAlchemyError as exc:
        sys.stderr.write(f"tradewire: database error: {type(exc).__name__}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
