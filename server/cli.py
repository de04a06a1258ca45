"""The ``ebas-login`` command: serve, phone simulator, account administration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from server.config import ConfigError, Settings, load
from server.credentials_cli import add_commands as add_credential_commands

log = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "server": {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "data_dir": getattr(args, "data_dir", None),
        }
    }
    return load(args.config, overrides=overrides)


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.web.app import create_app

    settings = _settings(args)
    app = create_app(settings)
    origin = settings.server.origin
    print(f"ebas-login：登入頁 {origin}/  手機模擬器 {origin}/phone", flush=True)
    print(f"ebas-login: login page {origin}/  phone simulator {origin}/phone", flush=True)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
    return 0


def accounts_import(args: argparse.Namespace) -> int:
    from server.accounts import AccountDirectory

    settings = _settings(args)

    async def run() -> int:
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        directory = await AccountDirectory.open(
            settings.accounts.database or settings.data_path("accounts.sqlite3")
        )
        try:
            report = await directory.import_csv(args.file)
        finally:
            await directory.close()
        for error in report.errors:
            print(error, file=sys.stderr)
        if not report.ok:
            print("匯入失敗，未寫入任何帳號。", file=sys.stderr)
            return 1
        print(f"已匯入 {report.imported} 筆帳號。")
        return 0

    return asyncio.run(run())


def phone(args: argparse.Namespace, rest: list[str]) -> int:
    from push.phone import main as phone_main

    return phone_main(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebas-login", description="eBAS login service")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", type=Path, help="TOML settings file")
        sub.add_argument("--host", help="address to listen on (EBAS_LOGIN_HOST)")
        sub.add_argument("--port", type=int, help="port to listen on (EBAS_LOGIN_PORT)")
        sub.add_argument("--data-dir", type=Path, help="data directory (EBAS_LOGIN_DATA_DIR)")

    sub = commands.add_parser("serve", help="run the login service")
    common(sub)
    sub.set_defaults(handler=serve)

    sub = commands.add_parser("accounts", help="eBAS account directory")
    actions = sub.add_subparsers(dest="action", required=True)
    imp = actions.add_parser("import", help="import accounts from CSV (all or nothing)")
    common(imp)
    imp.add_argument("file", type=Path)
    imp.set_defaults(handler=accounts_import)
    add_credential_commands(commands, actions, common, _settings)

    commands.add_parser("phone", help="phone simulator (ebas-login phone --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # The phone simulator has its own parser; hand it the rest untouched.
    if "phone" in argv:
        at = argv.index("phone")
        if all(a.startswith("--log-level") or a.startswith("-") for a in argv[:at]):
            logging.basicConfig(level=logging.WARNING)
            return phone(argparse.Namespace(), argv[at + 1 :])

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"設定錯誤 (configuration error): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
