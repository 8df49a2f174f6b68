// The login form, shown whenever a call is refused for want of the right admin token. The
// token is tried with one harmless call before the page goes on; a refusal shows the API's
// own message and forgets the token.

import { get, getToken, setToken } from "./api.js";
import { h } from "./dom.js";

/** A form that, once a token works, calls `done()`; `refusal` is the ApiError that led here. */
export function loginForm(refusal, done) {
  const input = h("input", {
    type: "password",
    name: "token",
    id: "token",
    autocomplete: "current-password",
    required: true,
  });
  const message = h("p", { class: "error", role: "alert", hidden: true });
  const show = (text) => {
    message.textContent = text;
    message.hidden = false;
  };
  if (getToken()) show(refusal.message); // a token was tried and refused
  setToken(null);

  const submit = async (event) => {
    event.preventDefault();
    message.hidden = true;
    setToken(input.value.trim());
    try {
      await get("/skillbooks");
    } catch (exc) {
      setToken(null);
      show(exc.message);
      input.select();
      return;
    }
    done();
  };

  const form = h(
    "form",
    { class: "login card", onsubmit: submit },
    h("h1", {}, "Admin token"),
    h(
      "p",
      { class: "muted" },
      "This proxy's admin API wants its token (admin.token). It is kept for this tab only.",
    ),
    h("label", { for: "token" }, "Token"),
    input,
    message,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  queueMicrotask(() => input.focus());
  return form;
}
