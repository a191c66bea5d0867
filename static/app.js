// The one script of the page: the Copy buttons (a new app password, recovery codes) and
// passkeys (WebAuthn): a form with data-passkey buttons carries the relying party, the
// challenge and the credential allowed; the browser's answer goes in its hidden fields.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        document.execCommand("copy");
      }
      button.textContent = button.dataset.done;
    });
  }
});

const b64uToBytes = (s) => {
  s = s.replace(/-/g, "+").replace(/_/g, "/");
  s += "===".slice((s.length + 3) % 4);
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
};
const bytesToB64u = (buf) => {
  let bin = "";
  for (const b of new Uint8Array(buf)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const put = (f, n, v) => { f.elements.namedItem(n).value = v; };

async function passkeyRegister(f) {
  const d = f.dataset;
  const cred = await navigator.credentials.create({ publicKey: {
    rp: { id: d.rpId, name: "Gestione account" },
    user: { id: b64uToBytes(d.userId), name: d.userName, displayName: d.userName },
    challenge: b64uToBytes(d.challenge),
    pubKeyCredParams: [{ type: "public-key", alg: -7 }],
    authenticatorSelection: { userVerification: "required", residentKey: "discouraged" },
    attestation: "none",
    timeout: 120000,
  } });
  put(f, "client_data_json", bytesToB64u(cred.response.clientDataJSON));
  put(f, "attestation_object", bytesToB64u(cred.response.attestationObject));
  // A control named "submit" would hide the form's own submit().
  HTMLFormElement.prototype.submit.call(f);
}

async function passkeyAssert(f) {
  const d = f.dataset;
  const cred = await navigator.credentials.get({ publicKey: {
    challenge: b64uToBytes(d.challenge),
    rpId: d.rpId,
    allowCredentials: d.allow ? [{ type: "public-key", id: b64uToBytes(d.allow) }] : [],
    userVerification: "required",
    timeout: 120000,
  } });
  put(f, "credential_id", bytesToB64u(cred.rawId));
  put(f, "client_data_json", bytesToB64u(cred.response.clientDataJSON));
  put(f, "authenticator_data", bytesToB64u(cred.response.authenticatorData));
  put(f, "signature", bytesToB64u(cred.response.signature));
  // A control named "submit" would hide the form's own submit().
  HTMLFormElement.prototype.submit.call(f);
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-passkey]");
  if (!b) return;
  const f = b.form;
  const run = b.dataset.passkey === "register" ? passkeyRegister : passkeyAssert;
  run(f).catch((e) => {
    const a = f.querySelector("[role=alert]");
    a.textContent = e.name + ": " + e.message;
    a.hidden = false;
  });
});
