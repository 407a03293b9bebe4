// Small DOM helpers: elements built with textContent only (never innerHTML), messages, dialogs.

export const $ = (id) => document.getElementById(id);

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// One live region: screen readers announce each message; errors are styled and kept until the
// next message, successes fade after a while.
let clearTimer = null;
export function announce(text, kind = "info") {
  const region = $("messages");
  clearTimeout(clearTimer);
  region.replaceChildren(el("p", { class: `message ${kind}` }, text));
  if (kind !== "error") clearTimer = setTimeout(() => region.replaceChildren(), 8000);
}

export function announceError(prefix, error) {
  const code = error.code ? ` (${error.code})` : "";
  announce(`${prefix}: ${error.message}${code}`, "error");
}

export function unavailable(feature, error) {
  return `${feature} is not available on this keyrack server (it answered ${error.status}: ` +
    "this version does not have the endpoint yet).";
}

export function timeCell(value, empty = "—") {
  if (!value) return el("span", { class: "muted" }, empty);
  const date = new Date(value);
  return el("time", { datetime: value, title: value }, date.toLocaleString());
}

// A native modal <dialog>: it traps focus and closes on Escape; focus returns to the opener.
export function confirmAction({ title, text, confirmLabel, withGrace = false }) {
  const dialog = $("confirm-dialog");
  const opener = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = confirmLabel;
  $("confirm-grace").hidden = !withGrace;
  $("confirm-grace-select").value = "0";
  dialog.returnValue = "cancel";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (opener && opener.isConnected) opener.focus();
      resolve(dialog.returnValue === "confirm"
        ? { grace: Number($("confirm-grace-select").value) } : null);
    }, { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// The secret is put in the page only inside this dialog and removed when it closes.
export function showSecret(name, secret, returnFocusTo) {
  const dialog = $("secret-dialog");
  $("secret-name").textContent = name;
  $("secret-value").value = secret;
  dialog.addEventListener("close", () => {
    $("secret-value").value = "";
    $("secret-name").textContent = "";
    if (returnFocusTo && returnFocusTo.isConnected) returnFocusTo.focus();
    else $("keys-title").focus();
    announce("The secret was removed from the page.");
  }, { once: true });
  dialog.showModal();
  $("secret-value").focus();
  $("secret-value").select();
}

export async function copySecret() {
  const input = $("secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
    announce("Copied the secret to the clipboard.", "success");
    // The live region sits behind the modal dialog: the focused button says it too.
    const button = $("secret-copy");
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  } catch (_error) {
    input.focus();
    input.select();
    announce("Copying is blocked here: the secret is selected, press Ctrl+C (or ⌘C).", "error");
  }
}
