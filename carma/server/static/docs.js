// The API's reference, drawn from this server's OpenAPI schema (no CDN: it works offline).
"use strict";

function add(parent, tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  parent.append(node);
  return node;
}

function schemaText(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()] || schema;
  return JSON.stringify(schema.properties ? {
    fields: Object.fromEntries(Object.entries(schema.properties).map(
      ([k, v]) => [k, v.type || (v.anyOf || []).map((a) => a.type).join(" | ") || "object"])),
    required: schema.required || [],
  } : schema, null, 2);
}

document.addEventListener("DOMContentLoaded", async () => {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("version").textContent = `${spec.info.title} ${spec.info.version}`;
  const main = document.getElementById("routes");
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(operations)) {
      const card = add(main, "section", undefined, "card wide route");
      const title = add(card, "h2");
      add(title, "code", `${method.toUpperCase()} ${path}`);
      add(card, "p", op.description || op.summary || "");
      const params = (op.parameters || []).map((p) => `${p.name} (${p.in}${p.required ? ", required" : ""})`);
      if (params.length) add(card, "p", "parameters: " + params.join(", "), "note");
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) add(card, "pre", schemaText(body.schema, spec));
    }
  }
});
