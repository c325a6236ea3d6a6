// Small DOM helpers: element creation without innerHTML (values from the server are text,
// never markup), number and time formatting, bounded live tables.

export const $ = (selector, root = document) => root.querySelector(selector);

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  const nodes = children.flat().filter((child) => child !== undefined && child !== null);
  element.append(...nodes.map((child) => (child instanceof Node ? child : String(child))));
  return element;
}

export function fmt(value, digits = 2) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  return value.toLocaleString("en-US", { maximumFractionDigits: abs >= 1000 ? 2 : abs >= 1 ? digits : 4 });
}

export function fmtTime(iso) {
  if (!iso) return "–";
  return iso.replace("T", " ").replace(/\.\d{3}Z$/, "Z");
}

export function toSeconds(iso) {
  return Date.parse(iso) / 1000;
}

/** Prepend a row of text cells to a table body, keeping at most `limit` rows. */
export function prependRow(tbody, cells, limit = 50, attributes = {}) {
  tbody.prepend(h("tr", attributes, ...cells.map((cell) => h("td", {}, fmt(cell)))));
  while (tbody.rows.length > limit) tbody.deleteRow(tbody.rows.length - 1);
}

export function fillTable(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => h("tr", {}, ...cells.map((cell) => h("td", {}, fmt(cell))))));
}

/** Text of an error reply (or a thrown value) for a role=alert element. */
export function errorText(error) {
  if (error && error.error_code) {
    const component = error.details && error.details.component ? ` (${error.details.component})` : "";
    return `${error.error_code}${component}: ${error.error_message}`;
  }
  return String(error && error.message ? error.message : error);
}

export function replaceOptions(select, options) {
  const current = select.value;
  select.replaceChildren(...options.map(([value, label]) => h("option", { value }, label)));
  if (options.some(([value]) => String(value) === current)) select.value = current;
}
