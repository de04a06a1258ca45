// A small element builder for the method panels: markup is built in script because the page's
// Content-Security-Policy allows no inline script or style, and a panel owns only its container.

/**
 * Create an element. `props` are set as properties (id, className, hidden, tabIndex, ...),
 * except role and names with a dash (aria-*, data-*), which become attributes. Children are nodes or
 * text; null and undefined children are skipped.
 */
export function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name.includes("-") || name === "role") {
      node.setAttribute(name, String(value));
    } else {
      node[name] = value;
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child);
    }
  }
  return node;
}
