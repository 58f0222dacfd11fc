// Reading a ticket's QR text at the door before asking the API (docs/tickets.md, "QR codes").
//
// `EH1:` + base32 of 116 bytes: key id (4), ticket id (16), event id (16), ticket type id
// (16), Ed25519 signature (64) over `EH1:` and bytes 0..51. The page refuses at once what
// the API would refuse too (not a ticket, a key it does not publish, a bad signature) and
// a ticket of another event; the API still decides everything else (and everything, where
// the browser cannot verify Ed25519).

(() => {
  "use strict";

  const { t } = window.EventHunting;
  const PREFIX = "EH1:";
  const PAYLOAD_BYTES = 116;
  const SIGNED_BYTES = 52;
  const KEY_ID_BYTES = 4;
  const ULID_BYTES = 16;
  const MAX_TEXT_LENGTH = 512;
  const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

  class TicketCodeRefused extends Error {
    constructor(reason, message) {
      super(message);
      this.reason = reason;
    }
  }

  // {text, keyId, ticketId, eventId, ticketTypeId, signed, signature} of a scanned or typed
  // code (white space around it and lower case accepted), or throws TicketCodeRefused.
  function readTicketCode(scanned) {
    if (scanned.length > MAX_TEXT_LENGTH) {
      throw new TicketCodeRefused("malformed", t("code_too_long"));
    }
    const text = scanned.trim().toUpperCase();
    if (!text.startsWith(PREFIX)) {
      throw new TicketCodeRefused("malformed", t("not_our_ticket"));
    }
    const payload = base32Bytes(text.slice(PREFIX.length));
    if (payload === null || payload.length !== PAYLOAD_BYTES) {
      throw new TicketCodeRefused("malformed", t("code_damaged"));
    }
    const ulidAt = (offset) => ulidText(payload.subarray(offset, offset + ULID_BYTES));
    return {
      text,
      keyId: hex(payload.subarray(0, KEY_ID_BYTES)),
      ticketId: ulidAt(KEY_ID_BYTES),
      eventId: ulidAt(KEY_ID_BYTES + ULID_BYTES),
      ticketTypeId: ulidAt(KEY_ID_BYTES + 2 * ULID_BYTES),
      signed: concat(new TextEncoder().encode(PREFIX), payload.subarray(0, SIGNED_BYTES)),
      signature: payload.subarray(SIGNED_BYTES),
    };
  }

  // The JWK set of GET /api/v1/checkins/public-key, and verifying a code's signature with it.
  class TicketKeys {
    constructor(jwkSet) {
      this.keys = new Map((jwkSet?.keys || []).map((jwk) => [jwk.kid, jwk]));
      this.imported = new Map();
    }

    get size() {
      return this.keys.size;
    }

    static async fetch() {
      const response = await fetch("/api/v1/checkins/public-key", {
        headers: { Accept: "application/json" },
        credentials: "omit",
      });
      if (!response.ok) {
        throw new Error(`public keys: ${response.status}`);
      }
      return new TicketKeys(await response.json());
    }

    // Resolves when the code's key is published and its signature verifies (or when this
    // browser cannot verify Ed25519: the API will); throws TicketCodeRefused otherwise.
    async verify(code) {
      const jwk = this.keys.get(code.keyId);
      if (!jwk) {
        throw new TicketCodeRefused("unknown_key", t("unknown_key"));
      }
      const key = await this.importKey(jwk);
      if (key === null) {
        return false;
      }
      const valid = await crypto.subtle.verify({ name: "Ed25519" }, key, code.signature, code.signed);
      if (!valid) {
        throw new TicketCodeRefused("bad_signature", t("bad_signature"));
      }
      return true;
    }

    async importKey(jwk) {
      if (!this.imported.has(jwk.kid)) {
        const imported = crypto.subtle
          ? crypto.subtle
              .importKey("jwk", { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, { name: "Ed25519" }, false, ["verify"])
              .catch(() => null)
          : Promise.resolve(null);
        this.imported.set(jwk.kid, imported);
      }
      return this.imported.get(jwk.kid);
    }
  }

  function base32Bytes(text) {
    const out = [];
    let bits = 0;
    let value = 0;
    for (const character of text) {
      const digit = BASE32.indexOf(character);
      if (digit < 0) {
        return null;
      }
      value = (value << 5) | digit;
      bits += 5;
      if (bits >= 8) {
        bits -= 8;
        out.push((value >> bits) & 0xff);
        value &= (1 << bits) - 1;
      }
    }
    return new Uint8Array(out);
  }

  // A ULID's canonical text (26 characters of Crockford base32) from its 16 bytes.
  function ulidText(bytes) {
    let number = 0n;
    for (const byte of bytes) {
      number = (number << 8n) | BigInt(byte);
    }
    let text = "";
    for (let index = 0; index < 26; index += 1) {
      text = CROCKFORD[Number(number & 31n)] + text;
      number >>= 5n;
    }
    return text;
  }

  function hex(bytes) {
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  function concat(first, second) {
    const joined = new Uint8Array(first.length + second.length);
    joined.set(first);
    joined.set(second, first.length);
    return joined;
  }

  const shared = (window.EventHunting = window.EventHunting || {});
  Object.assign(shared, { TicketCodeRefused, readTicketCode, TicketKeys });
})();
