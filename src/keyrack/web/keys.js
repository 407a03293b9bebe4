// The API keys view: list (following Link pages), create, rotate, disable/enable, revoke.

import { newIdempotencyKey, orgPath, request, session, toUtc } from "./api.js";
import {
  $, announce, announceError, confirmAction, el, showSecret, timeCell, unavailable,
} from "./dom.js";

const PAGE_SIZE = 100;
let nextPage = null;
let onSignedOut = () => {};

export function initKeys({ signedOut }) {
  onSignedOut = signedOut;
  $("create-form").addEventListener("submit", createKey);
  $("refresh-keys").addEventListener("click", () => loadKeys());
  $("keys-more").addEventListener("click", () => loadKeys({ append: true }));
}

// Errors every action shares: a rejected session signs out, the rest is announced.
export function handleError(prefix, error) {
  if (error.status === 401) {
    onSignedOut(`Your key was rejected (${error.code}): ${error.message}. Sign in again.`);
    return;
  }
  announceError(prefix, error);
}

export async function loadKeys({ append = false } = {}) {
  const path = append && nextPage ? nextPage : orgPath(`/api_keys?limit=${PAGE_SIZE}`);
  const body = $("keys-table").tBodies[0];
  body.setAttribute("aria-busy", "true");
  try {
    const { data, next } = await request("GET", path);
    if (!append) body.replaceChildren();
    body.append(...data.map(keyRow));
    nextPage = next;
    $("keys-more").hidden = !next;
    $("keys-empty").hidden = body.rows.length > 0;
    return true;
  } catch (error) {
    handleError("Could not load the keys", error);
    return false;
  } finally {
    body.removeAttribute("aria-busy");
  }
}

function permissionBadges(permissions) {
  return el("ul", { class: "badges", "aria-label": "permissions" },
    permissions.map((name) => el("li", { class: `badge badge-${name}` }, name)));
}

function statusOf(key) {
  if (key.expires_at && new Date(key.expires_at) <= new Date()) return ["Expired", "expired"];
  if (key.enabled === false) return ["Disabled", "disabled"];
  return ["Active", "active"];
}

function keyRow(key) {
  const [statusText, statusClass] = statusOf(key);
  const named = `key “${key.name}”`;
  const toggleLabel = key.enabled === false ? "Enable" : "Disable";
  const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
  return el("tr", { "data-key-id": key.id },
    el("th", { scope: "row", "data-label": "Name" }, key.name),
    cell("Start", el("code", {}, key.start)),
    cell("Permissions", permissionBadges(key.permissions)),
    cell("Created", timeCell(key.created_at)),
    cell("Last used", timeCell(key.last_used_at, "never")),
    cell("Expires", timeCell(key.expires_at, "never")),
    cell("Status", el("span", { class: `status status-${statusClass}` }, statusText)),
    cell("Actions", el("div", { class: "actions" },
      el("button", { type: "button", class: "secondary", "aria-label": `Rotate ${named}`,
        onclick: (event) => rotateKey(key, event.currentTarget) }, "Rotate"),
      el("button", { type: "button", class: "secondary", "aria-label": `${toggleLabel} ${named}`,
        onclick: () => setEnabled(key, key.enabled === false) }, toggleLabel),
      el("button", { type: "button", class: "danger", "aria-label": `Revoke ${named}`,
        onclick: () => revokeKey(key) }, "Revoke"))));
}

async function createKey(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.elements.name.value.trim();
  const permissions = [...form.querySelectorAll("input[name=permissions]:checked")]
    .map((input) => input.value);
  if (!name) return fieldError(form.elements.name, "Give the key a name.");
  if (permissions.length === 0) {
    return fieldError(form.querySelector("input[name=permissions]"), "Pick at least one permission.");
  }
  const body = { name, permissions };
  const expiresAt = toUtc(form.elements.expires.value);
  if (expiresAt) body.expires_at = expiresAt;
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const { data } = await request("POST", orgPath("/api_keys"), {
      body, idempotencyKey: newIdempotencyKey(),
    });
    form.reset();
    announce(`Created key “${data.name}”.`, "success");
    await loadKeys();
    showSecret(data.name, data.key, $("create-name"));
  } catch (error) {
    handleError("Could not create the key", error);
    // Back to the field the server named (e.g. an expiry in the past or beyond the policy).
    const field = { name: "name", expires_at: "expires" }[error.problem?.errors?.[0]?.field];
    if (field) form.elements[field].focus();
  } finally {
    submit.disabled = false;
  }
}

function fieldError(input, message) {
  announce(message, "error");
  input.focus();
}

async function rotateKey(key, button) {
  const answer = await confirmAction({
    title: `Rotate “${key.name}”?`,
    text: "A new secret replaces the current one (same key id and settings). Choose how long " +
      "the old secret keeps working so that its users can switch.",
    confirmLabel: "Rotate key",
    withGrace: true,
  });
  if (!answer) return;
  try {
    const { data } = await request("POST", orgPath(`/api_keys/${encodeURIComponent(key.id)}/rotate`), {
      body: { grace_period_seconds: answer.grace }, idempotencyKey: newIdempotencyKey(),
    });
    // The tab's own key: carry on with the new secret (without a grace period the old one has
    // already stopped working, and the next request would sign the user out).
    if (isSessionKey(key)) session.save(session.org, data.key);
    await loadKeys();
    showSecret(data.name, data.key, button.isConnected ? button : null);
  } catch (error) {
    if (error.endpointMissing) announce(unavailable("Key rotation", error), "error");
    else handleError("Could not rotate the key", error);
  }
}

// The page never learns its key's id; the listed `start` (the prefix and 4 random characters)
// is the secret's beginning, enough to recognise it among one org's keys.
function isSessionKey(key) {
  return Boolean(session.key && key.start && session.key.startsWith(key.start));
}

async function setEnabled(key, enabled) {
  const verb = enabled ? "enable" : "disable";
  // Disabling the tab's own key signs it out, and only another admin key can enable it again.
  if (!enabled && isSessionKey(key) && !(await confirmAction({
    title: `Disable “${key.name}”?`,
    text: "This looks like the key you are signed in with: you will be signed out, and only " +
      "another admin key can enable it again.",
    confirmLabel: "Disable key",
  }))) {
    announce(`Kept key “${key.name}” enabled.`);
    return;
  }
  try {
    await request("PATCH", orgPath(`/api_keys/${encodeURIComponent(key.id)}`), {
      body: { enabled },
    });
    announce(`Key “${key.name}” is now ${enabled ? "enabled" : "disabled"}.`, "success");
    await loadKeys();
  } catch (error) {
    if (error.endpointMissing) announce(unavailable(`Disabling and enabling keys`, error), "error");
    else handleError(`Could not ${verb} the key`, error);
  }
}

async function revokeKey(key) {
  const own = isSessionKey(key) ? " This looks like the key " +
    "you are signed in with: you will be signed out." : "";
  const answer = await confirmAction({
    title: `Revoke “${key.name}”?`,
    text: `Key ${key.start}… stops working immediately, everywhere. This cannot be undone.${own}`,
    confirmLabel: "Revoke key",
  });
  if (!answer) {
    announce(`Kept key “${key.name}”.`);
    return;
  }
  try {
    await request("DELETE", orgPath(`/api_keys/${encodeURIComponent(key.id)}`));
    announce(`Revoked key “${key.name}”.`, "success");
    if (await loadKeys()) $("keys-title").focus();
  } catch (error) {
    handleError("Could not revoke the key", error);
  }
}
