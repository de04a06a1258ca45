// 自然人憑證註冊 page (/ebas/card): a signed-in eBAS user signs a registration challenge with
// the card, and the server maps that card to the user's ID number.

import { requestJson } from "../status.js";
import { mountCardForm } from "./card.js";

const container = document.getElementById("card-register");
if (container) {
  mountCardForm(container, {
    purpose: "register",
    request: requestJson,
    lead: "請將要註冊的自然人憑證插入讀卡機，輸入 PIN 碼後按「註冊」。",
    submitText: "註冊",
    async submit(fields) {
      try {
        const answer = await requestJson("POST", "/ebas/card/registrations", fields);
        return { ok: true, message: answer.message };
      } catch (error) {
        return { ok: false, message: error.message, key: error.key };
      }
    },
  }).focus();
}
