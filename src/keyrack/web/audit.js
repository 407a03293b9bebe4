// The audit log view: filter by action and time, follow Link pages.

import { orgPath, request, toUtc } from "./api.js";
import { $, el, timeCell, unavailable } from "./dom.js";
import { handleError } from "./keys.js";

const PAGE_SIZE = 100;
let nextPage = null;

export function initAudit() {
  $("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit();
  });
  $("audit-more").addEventListener("click", () => loadAudit({ append: true }));
}

function firstPage() {
  const form = $("audit-form");
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const action = form.elements.action.value.trim();
  if (action) query.set("action", action);
  const since = toUtc(form.elements.since.value);
  if (since) query.set("since", since);
  const until = toUtc(form.elements.until.value);
  if (until) query.set("until", until);
  return orgPath(`/audit_events?${query}`);
}

export async function loadAudit({ append = false } = {}) {
  const body = $("audit-table").tBodies[0];
  const notice = $("audit-unavailable");
  body.setAttribute("aria-busy", "true");
  try {
    const { data, next } = await request("GET", append && nextPage ? nextPage : firstPage());
    notice.hidden = true;
    if (!append) body.replaceChildren();
    body.append(...data.map(eventRow));
    nextPage = next;
    $("audit-more").hidden = !next;
    $("audit-empty").hidden = body.rows.length > 0;
  } catch (error) {
    if (error.endpointMissing) {
      body.replaceChildren();
      $("audit-more").hidden = true;
      $("audit-empty").hidden = true;
      notice.textContent = unavailable("The audit log", error);
      notice.hidden = false;
    } else {
      // Rows of an earlier filter would read as answers to this one.
      if (!append) body.replaceChildren();
      $("audit-more").hidden = true;
      handleError("Could not load the audit log", error);
    }
  } finally {
    body.removeAttribute("aria-busy");
  }
}

function eventRow(event) {
  const cell = (label, ...content) => el("td", { "data-label": label }, ...content);
  const details = event.details && Object.keys(event.details).length
    ? el("code", { class: "details" }, JSON.stringify(event.details)) : "—";
  return el("tr", {},
    el("th", { scope: "row", "data-label": "Time" }, timeCell(event.occurred_at)),
    cell("Action", el("code", {}, event.action)),
    cell("Actor", event.actor_key_id ? el("code", {}, event.actor_key_id) : "—"),
    cell("Target", event.target ? el("code", {}, event.target) : "—"),
    cell("Client IP", event.client_ip || "—"),
    cell("Request ID", event.request_id ? el("code", {}, event.request_id) : "—"),
    cell("Details", details));
}
