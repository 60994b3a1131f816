//! The document is OpenAPI 3.1, describes every route the relay serves under `/admin/v1` (and
//! no route it does not serve), and every schema it refers to is in it.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

fn document_json() -> Value {
    serde_json::to_value(document()).expect("the document encodes")
}

/// Every `$ref` anywhere in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

#[test]
fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let doc = document_json();
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1."), "version {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty(), "the document refers to its schemas");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{target} is referred to but not in the document"
        );
    }
    for scheme in [BEARER, SESSION, CSRF] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
}

#[test]
fn every_operation_has_an_id_a_tag_and_documents_its_refusals() {
    let doc = document_json();
    let mut ids = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let operation = &doc["paths"][&path][method.to_lowercase()];
        let id = operation["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "{id} is used twice");
        assert!(
            operation["tags"][0].is_string(),
            "{method} {path} has no tag"
        );
        let public = path.ends_with(DOCUMENT_PATH) || path.ends_with(DOCS_PATH);
        let responses = operation["responses"].as_object().expect("responses");
        if public {
            assert_eq!(
                operation["security"],
                serde_json::json!([{}]),
                "{path} is public"
            );
        } else {
            for status in ["401", "403", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
        if path.contains('{') && !public {
            assert!(responses.contains_key("400"), "{method} {path} lacks 400");
        }
        if operation.get("requestBody").is_some() {
            assert!(responses.contains_key("413"), "{method} {path} lacks 413");
        }
    }
}

/// A concrete path for a documented one: `{id}` → `1`, any other parameter → `x`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{id}" => "1",
            s if s.starts_with('{') => "x",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented operation is served by the relay's router (none is a routing 404 or a
/// 405), and the relay serves no admin route the document lacks.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_routes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = crate::config::Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        database_url: format!("sqlite://{}", dir.path().join("relay.sqlite").display()),
        admin_token: Some(shared::settings::Secret::new("token".to_owned())),
        ..Default::default()
    };
    let app = crate::App::build(config, Default::default())
        .await
        .expect("the relay starts");
    let router = crate::router(app.state.clone());
    let doc = document_json();
    let documented = operations(&doc);
    assert!(documented.len() >= 15, "{documented:?}");
    let call = |method: Method, path: String| {
        let router = router.clone();
        async move {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer token")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("a request");
            let response = router.oneshot(request).await.expect("an answer");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("a body");
            (status, body)
        }
    };
    for (method, path) in &documented {
        let method: Method = method.parse().expect("a method");
        let (status, body) = call(method.clone(), concrete(path)).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        // A handler's 404 names what it did not find; the router's has no body.
        if status == StatusCode::NOT_FOUND {
            assert!(!body.is_empty(), "{method} {path} is not routed");
        }
    }
    // Every other method on a documented path is not served.
    for (_, path) in &documented {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ] {
            if documented.contains(&(method.to_string(), path.clone())) {
                continue;
            }
            let (status, _) = call(method.clone(), concrete(path)).await;
            assert!(
                matches!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNAUTHORIZED
                ),
                "{method} {path} is served ({status}) but not documented"
            );
        }
    }
}

#[test]
fn the_reference_page_lists_every_operation_and_schema_and_loads_nothing() {
    let page = crate::admin::docs::render(&document()).into_string();
    let doc = document_json();
    for (_, path) in operations(&doc) {
        assert!(page.contains(&path), "{path} is not on the page");
    }
    for name in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
    {
        assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
    }
    assert!(!page.contains("<script"), "the page runs no script");
    for loads in ["src=", "<link", "href=\"http", "url("] {
        assert!(
            !page.contains(loads),
            "the page loads nothing from elsewhere ({loads})"
        );
    }
}
