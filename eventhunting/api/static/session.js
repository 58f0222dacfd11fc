// Signing in through the API from a page, and calling its JSON routes with the tokens.
//
// The tokens live in this tab's sessionStorage (never a cookie, so no other site can make
// the browser use them). An access token that expired is renewed once with the refresh
// token; a refresh token works once, so concurrent calls share one renewal.

(() => {
  "use strict";

  const STORAGE_KEY = "eventhunting.session";
  const { t } = window.EventHunting;

  class Session {
    constructor(storage = window.sessionStorage) {
      this.storage = storage;
      this.tokens = readTokens(storage);
      this.renewal = null;
    }

    get signedIn() {
      return this.tokens !== null;
    }

    // POST /api/v1/auth/login; resolves to the account (GET /api/v1/me), or throws an
    // ApiError whose `message` can be shown as it is.
    async signIn(email, password) {
      const answer = await send("POST", "/api/v1/auth/login", { email, password });
      if (answer.status !== 200) {
        throw new ApiError(answer, signInRefusal(answer));
      }
      this.keep(answer.body);
      return this.account();
    }

    async account() {
      const answer = await this.request("GET", "/api/v1/me");
      if (answer.status !== 200) {
        throw new ApiError(answer, problemText(answer));
      }
      return answer.body;
    }

    async signOut() {
      const tokens = this.tokens;
      this.forget();
      if (tokens) {
        // Revokes the refresh token's family; the access token expires by itself.
        await send("POST", "/api/v1/auth/logout", { refresh_token: tokens.refresh_token }, tokens)
          .catch(() => undefined);
      }
    }

    // One API call as the signed-in account: resolves to {status, body} (body parsed from
    // JSON, or null), whatever the status; rejects only when the server cannot be reached.
    async request(method, path, body) {
      if (!this.tokens) {
        return { status: 401, body: { code: "unauthenticated", detail: t("sign_in_first") } };
      }
      const tokens = this.tokens;
      const answer = await send(method, path, body, tokens);
      if (answer.status !== 401 || answer.body?.code !== "unauthenticated") {
        return answer;
      }
      if (!(await this.renew(tokens))) {
        return answer;
      }
      return send(method, path, body, this.tokens);
    }

    async renew(expired) {
      if (this.tokens !== expired) {
        return this.tokens !== null; // another call renewed (or signed out) meanwhile
      }
      if (!this.renewal) {
        this.renewal = send("POST", "/api/v1/auth/refresh", { refresh_token: expired.refresh_token })
          .then((answer) => {
            if (answer.status === 200) {
              this.keep(answer.body);
              return true;
            }
            this.forget();
            return false;
          })
          .finally(() => {
            this.renewal = null;
          });
      }
      return this.renewal;
    }

    keep(pair) {
      this.tokens = { access_token: pair.access_token, refresh_token: pair.refresh_token };
      this.storage.setItem(STORAGE_KEY, JSON.stringify(this.tokens));
    }

    forget() {
      this.tokens = null;
      this.storage.removeItem(STORAGE_KEY);
    }
  }

  class ApiError extends Error {
    constructor(answer, message) {
      super(message);
      this.status = answer.status;
      this.body = answer.body;
    }
  }

  // The text of a problem+json answer for people: its detail, or its title.
  function problemText(answer) {
    const problem = answer.body || {};
    return problem.detail || problem.title || t("server_answered", { status: answer.status });
  }

  function signInRefusal(answer) {
    const code = answer.body?.code;
    if (code === "invalid_credentials") {
      return t("wrong_password");
    }
    if (code === "too_many_attempts") {
      const wait = answer.retryAfter ? t("try_again_in", { seconds: answer.retryAfter }) : "";
      return t("too_many_sign_ins") + wait;
    }
    return problemText(answer);
  }

  function readTokens(storage) {
    try {
      const stored = JSON.parse(storage.getItem(STORAGE_KEY) || "null");
      return stored && stored.access_token && stored.refresh_token ? stored : null;
    } catch {
      return null;
    }
  }

  async function send(method, path, body, tokens) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    if (tokens) {
      headers.Authorization = `Bearer ${tokens.access_token}`;
    }
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    return { status: response.status, body: parsed, retryAfter: response.headers.get("Retry-After") };
  }

  const shared = (window.EventHunting = window.EventHunting || {});
  Object.assign(shared, { Session, ApiError, problemText });
})();
