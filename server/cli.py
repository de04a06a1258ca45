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


def card_enroll(args: argparse.Namespace) -> int:
    from server.card.moica import ProfileError, id_suffix
    from server.card.registry import CardRegistry, load_certificate_file
    from server.errors import InvalidIdNumber
    from server.idnumber import validate

    settings = _settings(args)
    try:
        id_number = validate(args.id)
        certificate = load_certificate_file(args.cert)
        suffix = id_suffix(certificate)
    except InvalidIdNumber as exc:
        print(exc.text, file=sys.stderr)
        return 1
    except (OSError, ValueError, ProfileError) as exc:
        print(f"無法讀取憑證檔 {args.cert}：{exc}", file=sys.stderr)
        return 1
    if suffix is not None and suffix != id_number[-4:]:
        print("憑證中的身分證統一編號末四碼與輸入的身分證統一編號不符，未註冊。", file=sys.stderr)
        return 1

    async def run() -> None:
        path = settings.card.registrations or settings.data_path("card-registrations.sqlite3")
        registry = await CardRegistry.open(path)
        try:
            await registry.register(certificate, id_number, registered_by="cli")
        finally:
            await registry.close()

    asyncio.run(run())
    print(f"已註冊憑證（序號 {certificate.serial_number:x}）。")
    return 0


def hipki_simulator(args: argparse.Namespace) -> int:
    from server.hipki_sim.app import run_until_stopped

    settings = _settings(args)
    try:
        asyncio.run(
            run_until_stopped(
                settings.server.data_dir,
                pin=args.pin or settings.card.simulator_pin,
                port=args.component_port,
                responder_port=args.responder_port,
                id_number=args.id,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


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

    sub = commands.add_parser("card", help="自然人憑證 card registrations")
    actions = sub.add_subparsers(dest="action", required=True)
    enroll = actions.add_parser("enroll", help="map a card certificate to a national ID number")
    common(enroll)
    enroll.add_argument("--cert", type=Path, required=True, help="certificate file (PEM or DER)")
    enroll.add_argument("--id", required=True, help="national ID number, e.g. A123456789")
    enroll.set_defaults(handler=card_enroll)

    sub = commands.add_parser(
        "hipki-simulator", help="HiPKI component simulator and OCSP responder"
    )
    common(sub)
    sub.add_argument("--component-port", type=int, default=61161, help="simulator port (61161)")
    sub.add_argument("--responder-port", type=int, default=61162, help="OCSP/CRL port (61162)")
    sub.add_argument("--pin", help="PIN of the software token (default card.simulator_pin)")
    sub.add_argument("--id", default="A123456789", help="ID number of the simulated holder")
    sub.set_defaults(handler=hipki_simulator)

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
