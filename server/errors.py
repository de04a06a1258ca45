"""Errors that reach the browser: each has a stable key, an HTTP status and a zh-TW message.

One middleware (server/web/middleware.py) turns any ``LoginError`` into
``{"error": key, "message": message}`` with its status. Raise these from core code; never
build error responses by hand in handlers.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LoginError(Exception):
    """Base of every error shown to the user."""

    key: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "系統發生錯誤，請稍後再試。"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.text = message or self.message
        self.details = details
        super().__init__(self.text)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.key, "message": self.text}
        body.update(self.details)
        return body


# 400: input the user can fix.
class InvalidInput(LoginError):
    key = "invalid_input"
    status = 400
    message = "輸入資料格式不正確。"


class InvalidIdNumber(InvalidInput):
    key = "invalid_id_number"
    message = "身分證統一編號或統一證號格式不正確，請重新輸入。"


class UnknownMethod(InvalidInput):
    key = "unknown_method"
    message = "不支援此登入方式。"


class InvalidPassword(InvalidInput):
    key = "password_policy"
    message = "新密碼不符合密碼原則。"


# 401: credentials that did not verify.
class InvalidCredentials(LoginError):
    key = "invalid_auth"
    status = 401
    message = "帳號或密碼錯誤。"


class InvalidAssertion(LoginError):
    key = "invalid_assertion"
    status = 401
    message = "登入憑證無效或已使用，請重新登入。"


# 403: the caller is not the browser that started the login.
class BindingMismatch(LoginError):
    key = "binding_mismatch"
    status = 403
    message = "此登入作業不屬於目前的瀏覽器，請重新登入。"


class OriginRejected(LoginError):
    key = "origin_rejected"
    status = 403
    message = "來源網站不符，已拒絕連線。"


class CsrfRejected(LoginError):
    key = "csrf_rejected"
    status = 403
    message = "請求來源不符，請重新整理頁面後再試。"


# 404
class LoginNotFound(LoginError):
    key = "login_not_found"
    status = 404
    message = "找不到此登入作業，可能已過期，請重新登入。"


# 409: the login is not in a state that allows the request.
class WrongState(LoginError):
    key = "wrong_state"
    status = 409
    message = "此登入作業已結束，請重新登入。"


class LoginExpired(WrongState):
    key = "login_expired"
    message = "登入作業已逾時，請重新登入。"


# 423: locked or suspended credentials.
class AccountLocked(LoginError):
    key = "account_locked"
    status = 423
    message = "登入失敗次數過多，帳號已暫時鎖定。"


# 429
class RateLimited(LoginError):
    key = "rate_limited"
    status = 429
    message = "請求過於頻繁，請稍後再試。"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        text = message or f"請求過於頻繁，請於 {retry_after} 秒後再試。"
        super().__init__(text, retry_after=retry_after)
        self.retry_after = retry_after


# 502/503: a service behind us failed.
class UpstreamUnavailable(LoginError):
    key = "authority_unreachable"
    status = 503
    message = "行動自然人憑證服務暫時無法連線，請稍後再試或改用其他登入方式。"


class StoreUnavailable(LoginError):
    key = "store_unavailable"
    status = 503
    message = "登入服務暫時無法使用，請稍後再試。"


class UpstreamRejected(LoginError):
    """The upstream answered but its answer cannot be trusted or used."""

    key = "upstream_rejected"
    status = 502
    message = "驗證服務回應異常，請稍後再試。"


# 403: the embedded authority enrolls phones only from allowed clients.
class EnrollmentForbidden(LoginError):
    key = "enroll_forbidden"
    status = 403
    message = "此伺服器不接受由您的網路位址綁定裝置，請在伺服器本機執行手機模擬器。"


# Password and NHI card logins (401 credentials, 423 locked or suspended).
class CardNotRegistered(LoginError):
    key = "card_not_registered"
    status = 401
    message = "此健保卡尚未註冊網路服務，無法以健保卡登入。請先完成健保卡註冊，或改用其他登入方式。"


class CardPasswordMismatch(LoginError):
    key = "card_password_mismatch"
    status = 401
    message = "健保卡與註冊密碼不符，請重新輸入註冊密碼。"


class NhiCardRejected(LoginError):
    """The NHI card's data or H_Sign did not verify against its registration."""

    key = "nhi_card_rejected"
    status = 401
    message = "無法驗證此健保卡，請重新插入健保卡後再試；如仍失敗，請重新安裝健保卡元件。"


class InvalidCardNumber(InvalidInput):
    key = "invalid_card_number"
    message = "健保卡卡號格式不正確，請重新讀取健保卡。"


class CardSuspended(AccountLocked):
    key = "card_suspended"
    message = "健保卡註冊密碼錯誤已達 3 次，此卡的登入已暫停 10 分鐘。"


# Card (自然人憑證) login.
class ChallengeInvalid(InvalidInput):
    """The signing challenge is unknown, already used, or expired."""

    key = "challenge_invalid"
    message = "簽章用的挑戰碼無效、已使用或已逾時，請重新操作。"


class CardRejected(LoginError):
    """A card signature or certificate did not pass a check; ``reason`` names which one."""

    key = "card_rejected"
    status = 401
    message = "自然人憑證驗證失敗，請重新登入。"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason
