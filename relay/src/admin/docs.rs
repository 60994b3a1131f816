//! The admin API's reference, rendered on the server from its OpenAPI document: operations by
//! tag with their parameters, bodies and responses, then every schema. One self-contained
//! HTML page (no script, nothing fetched from elsewhere).

use maud::{DOCTYPE, Markup, html};
use serde_json::{Map, Value};
use utoipa::openapi::OpenApi;

/// The HTTP methods, in the order an operation list shows them.
const METHODS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

/// Untagged operations are listed under this heading.
const UNTAGGED: &str = "other";

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:62rem;margin:0 auto;\
padding:1rem;color:#1d232b}code,pre{font:13px ui-monospace,monospace}pre{background:#f3f5f7;\
padding:.6rem;overflow-x:auto;border-radius:4px}section.op{border:1px solid #d5dbe1;\
border-radius:6px;padding:.2rem .9rem;margin:.8rem 0}.method{font-weight:700;\
text-transform:uppercase;margin-right:.5rem}table{border-collapse:collapse}td,th{text-align:left;\
padding:.15rem .7rem .15rem 0;vertical-align:top}nav a{margin-right:.8rem}";

/// The page for `api`.
pub fn render(api: &OpenApi) -> Markup {
    let doc = serde_json::to_value(api).unwrap_or(Value::Null);
    let title = text(&doc, &["info", "title"]);
    let tags = tag_order(&doc);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — reference" }
                style { (STYLE) }
            }
            body {
                h1 { (title) }
                p { "OpenAPI " (text(&doc, &["openapi"])) " · " a href="openapi.json" { "openapi.json" } }
                p { (text(&doc, &["info", "description"])) }
                nav {
                    @for (tag, _) in &tags { a href={ "#tag-" (tag) } { (tag) } }
                    a href="#schemas" { "schemas" }
                }
                (security(&doc))
                @for (tag, description) in &tags {
                    h2 id={ "tag-" (tag) } { (tag) }
                    @if !description.is_empty() { p { (description) } }
                    @for (path, method, operation) in operations(&doc, tag) {
                        (render_operation(path, method, operation))
                    }
                }
                h2 id="schemas" { "Schemas" }
                @for (name, schema) in object(&doc, &["components", "schemas"]) {
                    section.op id={ "schema-" (name) } {
                        h3 { code { (name) } }
                        pre { (pretty(schema)) }
                    }
                }
            }
        }
    }
}

/// The tags in the document's order, then any an operation names that the list lacks.
fn tag_order(doc: &Value) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|tag| {
            (
                tag["name"].as_str().unwrap_or(UNTAGGED).to_owned(),
                tag["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (_, _, operation) in all_operations(doc) {
        let tag = first_tag(operation);
        if !tags.iter().any(|(name, _)| name == tag) {
            tags.push((tag.to_owned(), String::new()));
        }
    }
    tags
}

fn all_operations(doc: &Value) -> Vec<(&str, &str, &Value)> {
    object(doc, &["paths"])
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|operation| (path.as_str(), *method, operation))
            })
        })
        .collect()
}

fn operations<'a>(doc: &'a Value, tag: &str) -> Vec<(&'a str, &'a str, &'a Value)> {
    all_operations(doc)
        .into_iter()
        .filter(|(_, _, operation)| first_tag(operation) == tag)
        .collect()
}

fn first_tag(operation: &Value) -> &str {
    operation["tags"][0].as_str().unwrap_or(UNTAGGED)
}

fn render_operation(path: &str, method: &str, operation: &Value) -> Markup {
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    html! {
        section.op {
            h3 { span.method { (method) } code { (path) } }
            @if let Some(summary) = operation["summary"].as_str() { p { (summary) } }
            @if let Some(description) = operation["description"].as_str() { p { (description) } }
            @if !parameters.is_empty() {
                h4 { "Parameters" }
                table {
                    tr { th { "name" } th { "in" } th { "required" } th { "schema" } th { "description" } }
                    @for parameter in &parameters {
                        tr {
                            td { code { (text(parameter, &["name"])) } }
                            td { (text(parameter, &["in"])) }
                            td { (if parameter["required"].as_bool() == Some(true) { "yes" } else { "no" }) }
                            td { (schema_name(&parameter["schema"])) }
                            td { (text(parameter, &["description"])) }
                        }
                    }
                }
            }
            @if let Some(body) = operation.get("requestBody") {
                h4 { "Request body" }
                @if let Some(description) = body["description"].as_str() { p { (description) } }
                (contents(body))
            }
            h4 { "Responses" }
            table {
                @for (status, response) in object(operation, &["responses"]) {
                    tr {
                        td { code { (status) } }
                        td { (text(response, &["description"])) }
                        td { (contents(response)) }
                    }
                }
            }
        }
    }
}

/// A body's or response's media types and their schemas.
fn contents(holder: &Value) -> Markup {
    html! {
        @for (media, content) in object(holder, &["content"]) {
            div { code { (media) } " " (schema_name(&content["schema"])) }
        }
    }
}

/// A schema in a line: a link to a named one, else its type.
fn schema_name(schema: &Value) -> Markup {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return html! { a href={ "#schema-" (name) } { (name) } };
    }
    if let Some(items) = schema.get("items") {
        return html! { "array of " (schema_name(items)) };
    }
    match schema.get("type") {
        Some(Value::String(kind)) => html! { (kind) },
        Some(other) => html! { (other.to_string()) },
        None => html! { "any" },
    }
}

fn security(doc: &Value) -> Markup {
    html! {
        h2 { "Authentication" }
        table {
            @for (name, scheme) in object(doc, &["components", "securitySchemes"]) {
                tr {
                    td { code { (name) } }
                    td {
                        (text(scheme, &["type"])) " "
                        (text(scheme, &["scheme"])) (text(scheme, &["in"])) " "
                        code { (text(scheme, &["name"])) }
                    }
                    td { (text(scheme, &["description"])) }
                }
            }
        }
    }
}

/// The members of the object at `path` (none when there is none).
fn object<'a>(value: &'a Value, path: &[&str]) -> impl Iterator<Item = (&'a String, &'a Value)> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_object)
        .map(Map::iter)
        .into_iter()
        .flatten()
}

/// The string at `path`, or nothing.
fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
