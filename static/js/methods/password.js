// eCPA 帳號密碼 login: account and password form, the forced password change, and the help
// texts 首次登入說明 and 忘記密碼. Builds its markup inside #panel-password.

import { element } from "./dom.js";

const TEXT = {
  lead: "請輸入eCPA帳號密碼",
  empty: "請輸入eCPA帳號及密碼。",
  submit: "登入",
  submitting: "驗證中…",
  changeTitle: "請變更密碼",
  // Keyed by the login's change_reason; "required" covers a first login and an administrator reset.
  changeReasons: {
    required: "您是首次登入，或密碼已由管理者重設，請先設定新密碼再完成登入。",
    expired: "您的密碼已超過 {days} 天未變更，請先設定新密碼再完成登入。",
  },
  // For a login without a known change_reason.
  changeRequired: "您是首次登入、密碼已由管理者重設，或密碼已超過 {days} 天未變更，請先設定新密碼再完成登入。",
  newEmpty: "請輸入新密碼。",
  mismatch: "兩次輸入的新密碼不一致，請重新輸入。",
  changeSubmit: "變更密碼並登入",
  changing: "變更中…",
  policyFallback: "新密碼須符合密碼原則。",
  failed: "登入失敗，請重新登入。",
};

const DEFAULT_RULES = { max_age_days: 90, max_failures: 5, lockout_minutes: 15, rule: "" };

function helpSections(rules) {
  const firstLogin = element("section", { id: "password-help-first-login", className: "help-box", hidden: true, tabIndex: -1 },
    element("h3", { className: "help-box__title" }, "首次登入說明"),
    element("ol", {},
      element("li", {}, "請使用所屬機關主計單位或系統管理者提供的 eCPA 帳號與初始密碼登入。"),
      element("li", {}, "首次登入時，系統會要求您立即設定新密碼，設定完成後才會進入 eBAS。"),
      element("li", { id: "password-help-rule" }, rules.rule || TEXT.policyFallback),
      element("li", {}, `密碼每 ${rules.max_age_days} 天須變更一次；逾期未變更者，登入時須先設定新密碼。`),
    ),
  );
  const forgot = element("section", { id: "password-help-forgot", className: "help-box", hidden: true, tabIndex: -1 },
    element("h3", { className: "help-box__title" }, "忘記密碼"),
    element("p", {}, "請洽所屬機關主計單位或 eBAS 系統管理者重設密碼；重設後再次登入時須設定新密碼。"),
    element("p", {}, `密碼連續輸入錯誤 ${rules.max_failures} 次，帳號將暫時鎖定 ${rules.lockout_minutes} 分鐘，鎖定期間請勿重試。`),
  );
  return { firstLogin, forgot };
}

/** Wire up the password panel. `ctx` is the context that login.js builds. */
export function mount(panel, ctx) {
  const account = element("input", {
    id: "password-account", name: "account", className: "field__input", type: "text",
    autocomplete: "username", autocapitalize: "none", spellcheck: false, maxLength: 64,
  });
  const password = element("input", {
    id: "password-password", name: "password", className: "field__input", type: "password",
    autocomplete: "current-password", maxLength: 128,
  });
  const loginError = element("p", { id: "password-error", className: "field__error", role: "alert" });
  const submit = element("button", { id: "password-submit", className: "button button--primary button--block", type: "submit" }, TEXT.submit);
  const firstLoginLink = element("a", { href: "#password-help-first-login", className: "method-links__link" }, "首次登入說明");
  const forgotLink = element("a", { href: "#password-help-forgot", className: "method-links__link" }, "忘記密碼");

  const loginForm = element("form", { id: "password-form", className: "method-form", noValidate: true },
    element("p", { className: "lead" }, TEXT.lead),
    element("div", { className: "field" },
      element("label", { htmlFor: "password-account", className: "field__label" }, "帳號"), account),
    element("div", { className: "field" },
      element("label", { htmlFor: "password-password", className: "field__label" }, "密碼"), password),
    loginError,
    submit,
    element("p", { className: "method-links" }, firstLoginLink, forgotLink),
  );

  const changeReason = element("p", { id: "password-change-reason", className: "lead" });
  const policyText = element("p", { id: "password-policy", className: "field__help method-form__rule" }, TEXT.policyFallback);
  const newPassword = element("input", {
    id: "password-new", name: "new_password", className: "field__input", type: "password",
    autocomplete: "new-password", maxLength: 128, "aria-describedby": "password-policy",
  });
  const confirmPassword = element("input", {
    id: "password-confirm", name: "confirm_password", className: "field__input", type: "password",
    autocomplete: "new-password", maxLength: 128,
  });
  const changeError = element("p", { id: "password-change-error", className: "field__error", role: "alert" });
  const changeSubmit = element("button", { id: "password-change-submit", className: "button button--primary button--block", type: "submit" }, TEXT.changeSubmit);
  const changeTitle = element("h3", { id: "password-change-title", className: "view__title", tabIndex: -1 }, TEXT.changeTitle);
  const changeForm = element("form", { id: "password-change-form", className: "method-form", noValidate: true, hidden: true },
    changeTitle,
    changeReason,
    policyText,
    element("div", { className: "field" },
      element("label", { htmlFor: "password-new", className: "field__label" }, "新密碼"), newPassword),
    element("div", { className: "field" },
      element("label", { htmlFor: "password-confirm", className: "field__label" }, "確認新密碼"), confirmPassword),
    changeError,
    changeSubmit,
  );

  let rules = { ...DEFAULT_RULES };
  let help = helpSections(rules);
  panel.append(loginForm, changeForm, help.firstLogin, help.forgot);

  let login = null; // the pending login waiting for a new password

  ctx.request("GET", "/api/password/policy").then((answer) => {
    rules = { ...DEFAULT_RULES, ...answer };
    policyText.textContent = rules.rule || TEXT.policyFallback;
    const fresh = helpSections(rules);
    fresh.firstLogin.hidden = help.firstLogin.hidden;
    fresh.forgot.hidden = help.forgot.hidden;
    help.firstLogin.replaceWith(fresh.firstLogin);
    help.forgot.replaceWith(fresh.forgot);
    help = fresh;
  }).catch(() => {
    // The fallback texts stay; the server still enforces the policy and names the rule on error.
  });

  function toggleHelp(event, kind) {
    event.preventDefault();
    const section = kind === "first" ? help.firstLogin : help.forgot;
    const other = kind === "first" ? help.forgot : help.firstLogin;
    other.hidden = true;
    section.hidden = !section.hidden;
    if (!section.hidden) {
      section.focus();
    }
  }

  function setBusy(button, busy, idleText, busyText) {
    button.disabled = busy;
    button.setAttribute("aria-busy", String(busy));
    button.textContent = busy ? busyText : idleText;
  }

  function showLoginForm(message = "") {
    login = null;
    changeForm.hidden = true;
    loginForm.hidden = false;
    newPassword.value = "";
    confirmPassword.value = "";
    password.value = "";
    loginError.textContent = message;
  }

  function showChangeForm(state) {
    login = state;
    loginForm.hidden = true;
    changeForm.hidden = false;
    changeError.textContent = "";
    const reasonText = Object.hasOwn(TEXT.changeReasons, state.change_reason)
      ? TEXT.changeReasons[state.change_reason]
      : TEXT.changeRequired;
    changeReason.textContent = reasonText.replace("{days}", String(rules.max_age_days));
    changeTitle.focus();
  }

  function finish(state) {
    if (state.state === "approved") {
      ctx.complete(state);
      return;
    }
    if (state.state === "pending" && state.must_change) {
      showChangeForm(state);
      return;
    }
    showLoginForm(ctx.messageFor(state) || TEXT.failed);
  }

  async function onLogin(event) {
    event.preventDefault();
    if (submit.disabled) {
      return;
    }
    const name = account.value.trim();
    if (!name || !password.value) {
      loginError.textContent = TEXT.empty;
      (name ? password : account).focus();
      return;
    }
    loginError.textContent = "";
    ctx.clearStatus();
    setBusy(submit, true, TEXT.submit, TEXT.submitting);
    try {
      finish(await ctx.startLogin({ account: name, password: password.value }));
    } catch (error) {
      password.value = "";
      loginError.textContent = error.message;
      password.focus();
    } finally {
      setBusy(submit, false, TEXT.submit, TEXT.submitting);
    }
  }

  async function onChange(event) {
    event.preventDefault();
    if (changeSubmit.disabled || !login) {
      return;
    }
    if (!newPassword.value) {
      changeError.textContent = TEXT.newEmpty;
      newPassword.focus();
      return;
    }
    if (newPassword.value !== confirmPassword.value) {
      changeError.textContent = TEXT.mismatch;
      confirmPassword.value = "";
      confirmPassword.focus();
      return;
    }
    changeError.textContent = "";
    setBusy(changeSubmit, true, TEXT.changeSubmit, TEXT.changing);
    try {
      const url = `/api/logins/${encodeURIComponent(login.login_id)}/password`;
      finish(await ctx.request("POST", url, { new_password: newPassword.value }));
    } catch (error) {
      if (error.key === "password_policy") {
        changeError.textContent = error.message;
        newPassword.focus();
      } else {
        // The login ended or belongs to another browser: start over.
        showLoginForm(error.message);
        account.focus();
      }
    } finally {
      setBusy(changeSubmit, false, TEXT.changeSubmit, TEXT.changing);
    }
  }

  loginForm.addEventListener("submit", onLogin);
  changeForm.addEventListener("submit", onChange);
  firstLoginLink.addEventListener("click", (event) => toggleHelp(event, "first"));
  forgotLink.addEventListener("click", (event) => toggleHelp(event, "forgot"));

  return {
    activate() {
      (login ? newPassword : account).focus();
    },
  };
}
