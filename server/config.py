"""Settings: one typed object built once at start from a TOML file and ``EBAS_LOGIN_*`` variables.

Every setting has a working default for the embedded single-node mode. Unknown keys and bad
values stop the start with a ``ConfigError`` that names the setting (and never echoes a secret).

Environment names: ``EBAS_LOGIN_<SECTION>_<KEY>`` (``EBAS_LOGIN_TWFIDO_API_URL``); the three
server settings also go without the section: ``EBAS_LOGIN_HOST``, ``EBAS_LOGIN_PORT``,
``EBAS_LOGIN_DATA_DIR``. Precedence: defaults < TOML file < environment < command-line options.
"""

from __future__ import annotations

import dataclasses
import os
import string
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "EBAS_LOGIN_"
SERVER_SHORTCUTS = {"HOST": "host", "PORT": "port", "DATA_DIR": "data_dir"}
REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """A setting that is unknown or has a bad value; the text names the setting."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # Origin the browser sees (scheme://host[:port]); derived from host and port when empty.
    # WebSockets and form posts from any other Origin are rejected.
    public_origin: str = ""
    static_dir: Path = REPO_ROOT / "static"
    # Set Secure on cookies. Off by default only because the quick start is plain http on loopback.
    secure_cookies: bool = False
    # Addresses of reverse proxies whose X-Forwarded-For is trusted for the client address.
    trusted_proxies: list[str] = field(default_factory=list)
    # Logins one client address may start within start_window seconds (all methods together).
    start_limit: int = 30
    # Login methods offered (mobile, card, nhi, password); empty means every installed one.
    methods: list[str] = field(default_factory=list)
    start_window: int = 60

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError("server.port must be between 1 and 65535")
        unknown = set(self.methods) - {"mobile", "card", "nhi", "password"}
        if unknown:
            raise ConfigError(f"server.methods has unknown methods: {', '.join(sorted(unknown))}")
        if self.start_limit < 1 or self.start_window < 1:
            raise ConfigError("server.start_limit and server.start_window must be positive")
        if self.public_origin and not self.public_origin.startswith(("http://", "https://")):
            raise ConfigError("server.public_origin must start with http:// or https://")

    @property
    def origin(self) -> str:
        if self.public_origin:
            return self.public_origin.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# Folder under server.data_dir where the embedded authority keeps its devices and test CA.
EMBEDDED_AUTHORITY_DIR = "authority"


@dataclass(frozen=True)
class TwFidoSettings:
    mode: str = "embedded"  # embedded | moi
    # SP API base URL; empty in embedded mode means this server's own /twfido mount.
    api_url: str = ""
    sp_service_id: str = "ebas-embedded-sp"
    aes_key: str = ""  # base64 of 32 bytes; generated and persisted in data_dir when embedded
    op_code: str = "ATH"  # ATH | SIGN
    time_limit: int = 180  # seconds a push or QR stays valid; the SP API accepts 30-600
    poll_interval: float = 4.0  # the spec recommends polling getAthOrSignResult no faster
    random_iv: bool = False  # checksum IV: all-zero (most integrations) or random (UNCONFIRMED)
    # PEM files (several certificates each allowed) trusted for SIGN-mode results; empty in
    # embedded mode means the embedded authority's test CA. Required for SIGN in moi mode.
    trust_anchors: list[Path] = field(default_factory=list)
    # Check hashed_id_num of approved results: off, or sha256-hex (lowercase hex SHA-256 of the
    # ID number). Off by default because MOI's hash is UNCONFIRMED.
    hashed_id_num: str = "off"
    # Text of the I-SCAN QR code; {sp_ticket} and {sp_ticket_id} are filled in. UNCONFIRMED:
    # public demos show the bare sp_ticket. The embedded authority reads only that default.
    qr_template: str = "{sp_ticket}"
    # Path name of checkDeviceStatus (LF-01) under /moise/sp/; UNCONFIRMED.
    check_device_path: str = "checkDeviceStatus"
    # Pushes allowed for one ID number within push_window seconds, against push bombing.
    push_limit: int = 3
    push_window: int = 300
    sp_name: str = "全國主計網(eBAS)"
    http_timeout: float = 10.0  # per SP API call

    def check(self) -> None:
        if self.mode not in ("embedded", "moi"):
            raise ConfigError("twfido.mode must be embedded or moi")
        if self.op_code not in ("ATH", "SIGN"):
            raise ConfigError("twfido.op_code must be ATH or SIGN")
        if not 30 <= self.time_limit <= 600:
            raise ConfigError("twfido.time_limit must be between 30 and 600 seconds")
        if self.poll_interval < 1:
            raise ConfigError("twfido.poll_interval must be at least 1 second")
        if self.push_limit < 1 or self.push_window < 1:
            raise ConfigError("twfido.push_limit and twfido.push_window must be positive")
        if self.hashed_id_num not in ("off", "sha256-hex"):
            raise ConfigError("twfido.hashed_id_num must be off or sha256-hex")
        if self.http_timeout <= 0:
            raise ConfigError("twfido.http_timeout must be positive")
        _check_qr_template(self.qr_template, self.mode)
        if not self.check_device_path.isidentifier():
            raise ConfigError("twfido.check_device_path must be a name like checkDeviceStatus")
        if self.mode == "moi":
            if not self.api_url.startswith("https://") and not _loopback_url(self.api_url):
                raise ConfigError("twfido.api_url must be an https:// URL in moi mode")
            if not self.aes_key:
                raise ConfigError("twfido.aes_key is required in moi mode")
            if not self.sp_service_id or self.sp_service_id == "ebas-embedded-sp":
                raise ConfigError("twfido.sp_service_id must be set in moi mode")
            if self.op_code == "SIGN" and not self.trust_anchors:
                raise ConfigError("twfido.trust_anchors is required for op_code SIGN in moi mode")
        if self.aes_key:
            from push.checksum import decode_key

            try:
                decode_key(self.aes_key)
            except ValueError as exc:
                raise ConfigError(f"twfido.aes_key is invalid: {exc}") from None


QR_FIELDS = frozenset({"sp_ticket", "sp_ticket_id"})  # what twfido.qr_template may name


def _check_qr_template(template: str, mode: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        raise ConfigError("twfido.qr_template has unbalanced braces") from None
    if not names or not names <= QR_FIELDS:
        raise ConfigError(
            "twfido.qr_template must use {sp_ticket} or {sp_ticket_id} and no other field"
        )
    if mode == "embedded" and template != "{sp_ticket}":
        raise ConfigError("twfido.qr_template must be {sp_ticket} in embedded mode")


@dataclass(frozen=True)
class StoreSettings:
    backend: str = "memory"  # memory | redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "ebas-login:"

    def check(self) -> None:
        if self.backend not in ("memory", "redis"):
            raise ConfigError("store.backend must be memory or redis")
        if self.backend == "redis" and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError("store.redis_url must start with redis://, rediss:// or unix://")


@dataclass(frozen=True)
class AssertionSettings:
    issuer: str = "https://ebas-login.local"
    audience: str = "ebas"
    lifetime: int = 60  # seconds; the browser posts it at once, so short is safe
    key_file: Path | None = None  # PEM EC P-256 private key; generated in data_dir when unset

    def check(self) -> None:
        if not 5 <= self.lifetime <= 60:
            raise ConfigError("assertion.lifetime must be between 5 and 60 seconds")


@dataclass(frozen=True)
class AccountSettings:
    database: Path | None = None  # SQLite file; data_dir/accounts.sqlite3 when unset
    seed_demo: bool = True  # load the demo accounts into an empty directory
    ebas_session_lifetime: int = 8 * 3600  # seconds an eBAS portal session lasts
    password_notice_days: int = 90  # the portal's 3-month password-change notice

    def check(self) -> None:
        if self.password_notice_days < 1:
            raise ConfigError("accounts.password_notice_days must be positive")


@dataclass(frozen=True)
class AuditSettings:
    path: Path | None = None  # JSON lines; data_dir/audit.log when unset, "-" for stderr

    def check(self) -> None:
        return None


@dataclass(frozen=True)
class PasswordSettings:
    # argon2id cost (RFC 9106's second recommended option): passes, memory in KiB, lanes.
    time_cost: int = 3
    memory_cost: int = 65536
    parallelism: int = 4
    # Hashes computed at once; each takes memory_cost KiB, so this bounds memory under a storm.
    max_concurrent_hashes: int = 4
    # Failed logins for one account name within failure_window seconds before it locks.
    max_failures: int = 5
    # Failed logins from one client address (any account) before that address locks; higher
    # than max_failures because an office behind one NAT address shares it.
    address_max_failures: int = 20
    failure_window: int = 900
    lockout_seconds: int = 900  # how long a locked account or address stays locked
    max_age_days: int = 90  # a password older than this must be changed at the next login
    change_window: int = 600  # seconds the forced-change step of a login stays open
    # Password policy for new passwords: length and how many of the four character classes
    # (upper case, lower case, digits, symbols) a password must mix.
    min_length: int = 12
    min_classes: int = 3
    max_length: int = 128  # argon2 accepts any length; this only bounds the request

    def check(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1 or self.memory_cost < 8 * self.parallelism:
            raise ConfigError("password.time_cost, parallelism and memory_cost are out of range")
        if self.max_concurrent_hashes < 1:
            raise ConfigError("password.max_concurrent_hashes must be positive")
        if min(self.max_failures, self.address_max_failures, self.failure_window) < 1:
            raise ConfigError(
                "password.max_failures, address_max_failures and failure_window must be positive"
            )
        if self.lockout_seconds < 1 or self.change_window < 60 or self.max_age_days < 1:
            raise ConfigError(
                "password.lockout_seconds, change_window (>= 60) and max_age_days are out of range"
            )
        if not 1 <= self.min_classes <= 4:
            raise ConfigError("password.min_classes must be between 1 and 4")
        if not 8 <= self.min_length <= self.max_length:
            raise ConfigError(
                "password.min_length must be at least 8 and at most password.max_length"
            )


@dataclass(frozen=True)
class NhiSettings:
    # WebSocket of the NHI card component that the login page connects to.
    component_url: str = "wss://iccert.nhi.gov.tw:7777/echo"
    # Run the card-component simulator on loopback and point the page at it instead:
    # auto = only when twfido.mode is embedded (the demo), on, or off.
    simulator: str = "auto"
    simulator_port: int = 0  # 0 picks a free loopback port
    # NHI rule: this many wrong registered passwords suspend the card's login for
    # suspend_seconds; mistakes older than failure_window seconds are forgotten.
    max_failures: int = 3
    suspend_seconds: int = 600
    failure_window: int = 3600
    # Failed card logins from one client address before that address locks for suspend_seconds;
    # bounds guessing across many card numbers.
    address_max_failures: int = 20

    def check(self) -> None:
        if not self.component_url.startswith(("wss://", "ws://")):
            raise ConfigError("nhi.component_url must start with wss:// or ws://")
        if self.simulator not in ("auto", "on", "off"):
            raise ConfigError("nhi.simulator must be auto, on or off")
        if not 0 <= self.simulator_port < 65536:
            raise ConfigError("nhi.simulator_port must be between 0 and 65535")
        if (
            min(
                self.max_failures,
                self.suspend_seconds,
                self.failure_window,
                self.address_max_failures,
            )
            < 1
        ):
            raise ConfigError(
                "nhi.max_failures, suspend_seconds, failure_window and address_max_failures must be positive"
            )


@dataclass(frozen=True)
class CardSettings:
    # Origin of the HiPKI local component; the login page opens its popup there and accepts
    # postMessage answers only from exactly this origin.
    component_url: str = "http://localhost:61161"
    # Run the HiPKI simulator (software token) and a local OCSP/CRL responder on loopback and
    # point the page at them: auto = only when twfido.mode is embedded (the demo), on, or off.
    simulator: str = "auto"
    simulator_port: int = 0  # 0 picks a free loopback port
    simulator_pin: str = "123456"  # PIN of the simulator's software token; demo only
    # PEM files of the trusted roots (GRCA) and of the issuing CAs under them (MOICA, GCA, XCA).
    trust_anchors: list[Path] = field(default_factory=list)
    intermediates: list[Path] = field(default_factory=list)
    signature_type: str = "PKCS7"  # PKCS7 (SignedData with signed attributes) or PKCS1
    # Seconds from issuing a challenge to receiving its signature; covers typing the PIN.
    challenge_lifetime: int = 120
    ocsp_timeout: float = 5.0  # seconds per OCSP request
    crl_timeout: float = 20.0  # seconds per CRL download; MOICA's CRL is tens of megabytes
    # Longest reuse of an OCSP answer or a CRL, even when its nextUpdate is later.
    ocsp_cache_max: int = 3600
    crl_cache_max: int = 6 * 3600
    # Accept a certificate when neither OCSP nor CRL answers. Off: such logins fail.
    fail_open: bool = False
    registrations: Path | None = None  # SQLite file; data_dir/card-registrations.sqlite3 if unset

    def check(self) -> None:
        if not self.component_url.startswith(("http://", "https://")):
            raise ConfigError("card.component_url must start with http:// or https://")
        if self.simulator not in ("auto", "on", "off"):
            raise ConfigError("card.simulator must be auto, on or off")
        if not 0 <= self.simulator_port < 65536:
            raise ConfigError("card.simulator_port must be between 0 and 65535")
        if self.signature_type not in ("PKCS7", "PKCS1"):
            raise ConfigError("card.signature_type must be PKCS7 or PKCS1")
        if not 10 <= self.challenge_lifetime <= 600:
            raise ConfigError("card.challenge_lifetime must be between 10 and 600 seconds")
        if min(self.ocsp_timeout, self.crl_timeout) <= 0:
            raise ConfigError("card.ocsp_timeout and card.crl_timeout must be positive")
        if min(self.ocsp_cache_max, self.crl_cache_max) < 0:
            raise ConfigError("card.ocsp_cache_max and card.crl_cache_max must not be negative")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    twfido: TwFidoSettings = field(default_factory=TwFidoSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    assertion: AssertionSettings = field(default_factory=AssertionSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    password: PasswordSettings = field(default_factory=PasswordSettings)
    nhi: NhiSettings = field(default_factory=NhiSettings)
    card: CardSettings = field(default_factory=CardSettings)

    def check(self) -> None:
        for section in dataclasses.fields(self):
            getattr(self, section.name).check()

    def data_path(self, name: str) -> Path:
        return self.server.data_dir / name


def _loopback_url(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Convert a TOML or environment value to the field's type, or raise ``ConfigError``."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        inner = [k for k in typing.get_args(kind) if k is not type(None)]
        if value in (None, ""):
            return None
        return _coerce(name, inner[0], value)
    if origin is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, str):
            value = [v for v in (part.strip() for part in value.split(",")) if v]
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list")
        return [_coerce(name, item, v) for v in value]
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is Path:
            return Path(str(value)).expanduser()
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{name} has an invalid value (expected {kind.__name__})") from None
    raise ConfigError(f"{name} has an unsupported type")


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build and check the settings from defaults, a TOML file, the environment and overrides."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {}

    if path is not None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{section} must be a table")
            raw.setdefault(section, {}).update(values)

    sections = {f.name: f.type for f in dataclasses.fields(Settings)}
    hints = typing.get_type_hints(Settings)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if rest in SERVER_SHORTCUTS:
            raw.setdefault("server", {})[SERVER_SHORTCUTS[rest]] = value
            continue
        section, _, key = rest.partition("_")
        section = section.lower()
        if section not in sections or not key:
            raise ConfigError(f"unknown environment variable {name}")
        raw.setdefault(section, {})[key.lower()] = value

    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})

    built: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in hints:
            raise ConfigError(f"unknown settings section [{section}]")
        section_cls = hints[section]
        types_ = _section_types(section_cls)
        known = {f.name for f in dataclasses.fields(section_cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown setting {section}.{key}")
            kwargs[key] = _coerce(f"{section}.{key}", types_[key], value)
        built[section] = section_cls(**kwargs)

    settings = Settings(**built)
    settings.check()
    return settings
