// Login methods other than the mobile credential, keyed by the data-method of their tab.
// Register one by importing it here, e.g.:
//   import * as password from "./password.js";
//   export const METHODS = { password };
// Each module exports `mount(container, context)`; login.js describes the context and handle.
import * as card from "./card.js";
import * as nhi from "./nhi.js";
import * as password from "./password.js";

export const METHODS = { card, nhi, password };
