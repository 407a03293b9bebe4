// The dashboard's entry point: sign in and out, and switching between the keys and audit views.

import { request, session } from "./api.js";
import { initAudit, loadAudit } from "./audit.js";
import { $, announce, copySecret } from "./dom.js";
import { initKeys, loadKeys } from "./keys.js";

const VIEWS = { keys: "keys-view", audit: "audit-view" };

function showOnly(viewId) {
  for (const id of ["signin-view", ...Object.values(VIEWS)]) $(id).hidden = id !== viewId;
}

function signedIn() {
  return Boolean(session.org && session.key);
}

function signOut(message) {
  session.clear();
  $("signin-form").reset();
  $("nav").hidden = true;
  $("session").hidden = true;
  showOnly("signin-view");
  if (message) announce(message, "error");
  else announce("Signed out: the key was removed from this tab.");
  $("signin-org").focus();
}

async function route({ focus = true } = {}) {
  if (!signedIn()) {
    showOnly("signin-view");
    return;
  }
  const name = window.location.hash === "#audit" ? "audit" : "keys";
  showOnly(VIEWS[name]);
  $("nav").hidden = false;
  $("session").hidden = false;
  $("session-org").textContent = session.org;
  for (const [view, link] of [["keys", "nav-keys"], ["audit", "nav-audit"]]) {
    if (view === name) $(link).setAttribute("aria-current", "page");
    else $(link).removeAttribute("aria-current");
  }
  if (focus) $(`${name}-title`).focus();
  if (name === "audit") await loadAudit();
  else await loadKeys();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const org = form.elements.org.value.trim();
  const key = form.elements.key.value.trim();
  if (!org || !form.elements.org.checkValidity()) {
    announce("Enter the organization ID (letters, digits, dot, dash, underscore).", "error");
    form.elements.org.focus();
    return;
  }
  if (!key) {
    announce("Enter an admin API key.", "error");
    form.elements.key.focus();
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    // Listing keys is the cheapest call that proves the key is an admin of this org.
    await request("GET", `/orgs/${encodeURIComponent(org)}/api_keys?limit=1`, { key });
    session.save(org, key);
    form.reset();
    announce(`Signed in to ${org}.`, "success");
    if (window.location.hash !== "#keys") window.location.hash = "#keys";
    else await route();
  } catch (error) {
    const reasons = {
      401: "the key was not accepted",
      403: "this key does not have the admin permission",
      404: "this key does not belong to that organization",
    };
    const reason = reasons[error.status] || error.message;
    announce(`Sign-in failed: ${reason} (${error.code}).`, "error");
    form.elements.key.focus();
  } finally {
    button.disabled = false;
  }
}

function init() {
  initKeys({ signedOut: signOut });
  initAudit();
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("secret-copy").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", () => $("secret-dialog").close());
  window.addEventListener("hashchange", () => route());
  route({ focus: false });
}

init();
