// Log in with a password (POST /api/v1/auth/login, the public REST route) or a pasted JWT.
// The token is kept in sessionStorage: a reload stays logged in, a new browser session does not.

import { $, errorText } from "./dom.js";

const KEY = "tradewire.token";

export function savedToken() {
  return sessionStorage.getItem(KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

/** Calls `onToken(token)` when the user logged in; `onToken` may throw to show an error. */
export function setupLogin(onToken) {
  const error = $("#login-error");
  const submit = async (token) => {
    error.textContent = "";
    try {
      await onToken(token);
      sessionStorage.setItem(KEY, token);
    } catch (failure) {
      error.textContent = errorText(failure);
    }
  };
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch("api/v1/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    const body = await response.json();
    if (!response.ok) {
      error.textContent = errorText(body);
      return;
    }
    await submit(body.access_token);
  });
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    await submit(new FormData(event.target).get("token").trim());
  });
}
