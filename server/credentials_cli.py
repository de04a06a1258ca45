"""Administration commands for login credentials, added to ``ebas-login`` by ``server.cli``.

``accounts set-password|reset-password|unlock ACCOUNT``, ``nhi register`` and ``nhi-simulator``.
Passwords are read from standard input or an interactive prompt, never from the command line,
where other users could see them in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable

from server.config import Settings
from server.credentials import FILE_NAME, CardRegistration, CredentialStore
from server.errors import InvalidIdNumber, InvalidPassword
from server.idnumber import validate
from server.methods.password import normalize_account
from server.nhi_card import CardDataError, validate_card_number
from server.passwords import HashParameters, PasswordHashing, PasswordPolicy

# NHI registered passwords are 6 to 12 characters (the length the card component accepts).
NHI_PASSWORD_MIN = 6
NHI_PASSWORD_MAX = 12

SettingsLoader = Callable[[argparse.Namespace], Settings]


def read_password(prompt: str) -> str:
    """Read a password from a prompt (typed twice) or, when piped, the first line of stdin."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(prompt)
    if getpass.getpass("再次輸入確認：") != first:
        raise SystemExit("兩次輸入的密碼不一致，未變更任何資料。")
    return first


def _hashing(settings: Settings) -> PasswordHashing:
    p = settings.password
    return PasswordHashing(
        HashParameters(p.time_cost, p.memory_cost, p.parallelism), max_concurrent=1
    )


async def _open(settings: Settings) -> CredentialStore:
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    return await CredentialStore.open(settings.data_path(FILE_NAME))


async def _id_number_for(settings: Settings, account: str, id_option: str | None) -> str:
    if id_option:
        return validate(id_option)
    from server.accounts import AccountDirectory

    directory = await AccountDirectory.open(
        settings.accounts.database or settings.data_path("accounts.sqlite3")
    )
    try:
        found = await directory.find_by_account(account)
    finally:
        await directory.close()
    if found is None:
        raise SystemExit(f"eBAS 帳號目錄中沒有帳號「{account}」，請以 --id 指定身分證統一編號。")
    return found.id_number


def set_password(args: argparse.Namespace, settings: Settings) -> int:
    account = normalize_account(args.account)
    policy = PasswordPolicy(
        settings.password.min_length, settings.password.min_classes, settings.password.max_length
    )
    password = read_password(f"帳號 {account} 的新密碼：")
    try:
        policy.check(password, account=account)
    except InvalidPassword as exc:
        print(exc.text, file=sys.stderr)
        return 1

    async def run() -> int:
        id_number = await _id_number_for(settings, account, args.id)
        store = await _open(settings)
        try:
            hashed = await _hashing(settings).hash(password)
            await store.set_password(
                account, id_number, hashed, changed_at=time.time(), must_change=not args.permanent
            )
        finally:
            await store.close()
        note = "" if args.permanent else "，下次登入時須變更密碼"
        print(f"已設定帳號 {account} 的密碼{note}。")
        return 0

    return asyncio.run(run())


def reset_password(args: argparse.Namespace, settings: Settings) -> int:
    account = normalize_account(args.account)

    async def run() -> int:
        store = await _open(settings)
        try:
            found = await store.require_change(account)
        finally:
            await store.close()
        if not found:
            print(f"找不到帳號 {account} 的密碼。", file=sys.stderr)
            return 1
        print(f"帳號 {account} 下次登入時須變更密碼。")
        return 0

    return asyncio.run(run())


def unlock(args: argparse.Namespace, settings: Settings) -> int:
    account = normalize_account(args.account)

    async def run() -> int:
        store = await _open(settings)
        try:
            found = await store.mark_unlocked(account, time.time())
        finally:
            await store.close()
        if not found:
            print(f"找不到帳號 {account} 的密碼。", file=sys.stderr)
            return 1
        print(f"已解除帳號 {account} 的登入鎖定。")
        return 0

    return asyncio.run(run())


def nhi_register(args: argparse.Namespace, settings: Settings) -> int:
    try:
        card_number = validate_card_number(args.card)
        id_number = validate(args.id)
    except CardDataError:
        print("健保卡卡號應為 12 位數字。", file=sys.stderr)
        return 1
    except InvalidIdNumber as exc:
        print(exc.text, file=sys.stderr)
        return 1
    password = read_password(f"健保卡 {card_number} 的註冊密碼：")
    if not NHI_PASSWORD_MIN <= len(password) <= NHI_PASSWORD_MAX:
        print(
            f"註冊密碼長度須為 {NHI_PASSWORD_MIN} 至 {NHI_PASSWORD_MAX} 個字元。", file=sys.stderr
        )
        return 1

    async def run() -> int:
        store = await _open(settings)
        try:
            hashed = await _hashing(settings).hash(password)
            registration = CardRegistration(card_number, id_number, hashed, args.name, time.time())
            await store.register_card(registration)
        finally:
            await store.close()
        print(f"已註冊健保卡 {card_number}。")
        return 0

    return asyncio.run(run())


def nhi_simulator(args: argparse.Namespace) -> int:
    from server.nhi_simulator import NhiCardSimulator, demo_cards

    cards = demo_cards()
    if args.card and args.card not in {card.card_number for card in cards}:
        known = ", ".join(card.card_number for card in cards)
        print(f"unknown card {args.card}; test cards: {known}", file=sys.stderr)
        return 1

    async def run() -> None:
        async with NhiCardSimulator(
            cards, host=args.host, port=args.port, inserted=args.card
        ) as sim:
            print(f"NHI card simulator: {sim.url} (inserted card {sim.inserted})", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def add_commands(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    account_actions: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
    load_settings: SettingsLoader,
) -> None:
    """Add the credential commands to the ``ebas-login`` parser."""

    def with_settings(handler: Callable[[argparse.Namespace, Settings], int]) -> Callable[..., int]:
        return lambda args: handler(args, load_settings(args))

    sub = account_actions.add_parser("set-password", help="set an eCPA password (read from stdin)")
    common(sub)
    sub.add_argument("account")
    sub.add_argument("--id", help="national ID number; default: the eBAS account's")
    sub.add_argument(
        "--permanent", action="store_true", help="do not require a change at the next login"
    )
    sub.set_defaults(handler=with_settings(set_password))

    sub = account_actions.add_parser("reset-password", help="require a change at the next login")
    common(sub)
    sub.add_argument("account")
    sub.set_defaults(handler=with_settings(reset_password))

    sub = account_actions.add_parser("unlock", help="end a lock after failed logins")
    common(sub)
    sub.add_argument("account")
    sub.set_defaults(handler=with_settings(unlock))

    sub = commands.add_parser("nhi", help="NHI card registrations")
    actions = sub.add_subparsers(dest="action", required=True)
    register = actions.add_parser("register", help="register a card (password from stdin)")
    common(register)
    register.add_argument("--card", required=True, help="12-digit card number")
    register.add_argument("--id", required=True, help="national ID number on the card")
    register.add_argument("--name", default="", help="holder name, sent in the login assertion")
    register.set_defaults(handler=with_settings(nhi_register))

    sub = commands.add_parser("nhi-simulator", help="run the NHI card-component simulator")
    sub.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    sub.add_argument("--port", type=int, default=7777, help="port (default 7777)")
    sub.add_argument("--card", help="card number to insert (default: the first test card)")
    sub.set_defaults(handler=nhi_simulator)
