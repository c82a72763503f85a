//! `GET /openapi.json`: a valid OpenAPI 3.1 document that lists exactly the routes the router
//! serves, with their status codes; on both backends.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, KEY, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every route of the API with the status codes it documents.
const ROUTES: &[(&str, &str, &[u16])] = &[
    (
        "post",
        "/bootstrap/users",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/accounts/password",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/accounts/suspend",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/accounts/resume",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/accounts/delete",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/namespaces/resources",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    (
        "post",
        "/namespaces/operators",
        &[200, 202, 400, 401, 403, 409, 413, 415, 422, 429, 503],
    ),
    ("get", "/jobs/{id}", &[200, 400, 401, 404, 429]),
    ("get", "/jobs/{id}/result", &[200, 401, 404, 409, 429]),
    ("get", "/jobs", &[200, 400, 401, 429, 503]),
    ("get", "/jobs/{id}/history", &[200, 400, 401, 404, 429, 503]),
    ("post", "/jobs/{id}/cancel", &[202, 401, 403, 404, 409, 429]),
    (
        "post",
        "/jobs/{id}/retry",
        &[202, 401, 403, 404, 409, 429, 503],
    ),
    ("get", "/accounts/list", &[200, 401, 429, 502, 503, 504]),
    ("get", "/namespaces", &[200, 401, 429, 502, 503, 504]),
    ("get", "/healthz", &[200]),
    ("get", "/readyz", &[200, 503]),
    ("get", "/metrics", &[200, 401, 429]),
    ("get", "/openapi.json", &[200, 401, 429]),
];

both_backends!(the_document_lists_every_route_with_its_status_codes);
async fn the_document_lists_every_route_with_its_status_codes(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, doc) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "everestctl-api");

    let mut documented: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let codes = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|c| c.parse().unwrap())
                .collect();
            documented.insert((method.clone(), path.clone()), codes);
        }
    }
    let expected: BTreeMap<(String, String), BTreeSet<u16>> = ROUTES
        .iter()
        .map(|(m, p, codes)| {
            (
                (m.to_string(), p.to_string()),
                codes.iter().copied().collect(),
            )
        })
        .collect();
    assert_eq!(documented, expected);

    // Request bodies are the request types themselves; auth schemes are declared.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "BootstrapRequest",
        "DeleteUserRequest",
        "ErrorBody",
        "JobAccepted",
        "JobStatusBody",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    // A scheduled retry is described as data, not only in prose.
    let event = &schemas["HistoryEvent"]["properties"];
    assert!(
        event["retry_at"]["type"].to_string().contains("string")
            && event["retry_at"]["format"] == "date-time",
        "{event}"
    );
    assert!(
        event["delay_ms"]["type"].to_string().contains("integer"),
        "{event}"
    );
    // Nested request objects keep their properties (they are read as JSON objects only).
    for (name, field) in [
        ("ResourcesRequest", "cpu_cores"),
        ("OperatorsRequest", "mysql"),
    ] {
        assert!(
            schemas[name]["properties"][field].is_object(),
            "{name}: {}",
            schemas[name]
        );
    }
    let body = &doc["paths"]["/bootstrap/users"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["$ref"];
    assert_eq!(body, "#/components/schemas/BootstrapRequest");
    assert!(doc["components"]["securitySchemes"]["admin_key"].is_object());
    app.stop().await;
}

both_backends!(every_documented_route_is_served);
async fn every_documented_route_is_served(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let (_, doc) = app.get_json("/openapi.json").await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = app.url(&path.replace("{id}", "00000000-0000-7000-8000-000000000000"));
        for method in item.as_object().unwrap().keys() {
            let request = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                other => panic!("unexpected method {other}"),
            };
            let r = request.header("X-Admin-Key", KEY).send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(String::from));
            assert!(
                !detail.is_some_and(|d| d.starts_with("no such route")),
                "{method} {path} is documented but not served ({status})"
            );
        }
    }
    app.stop().await;
}

both_backends!(states_are_enums_in_the_document);
/// The document lists the states the API answers with, once, as enums.
async fn states_are_enums_in_the_document(backend: Backend) {
    let app = TestApp::start_on(backend).await;
    let (_, doc) = app.get_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    // A property is the enum itself or a reference to it.
    let enum_of = |schema: &serde_json::Value| -> Vec<String> {
        let target = match schema["$ref"].as_str() {
            Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        target["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {schema}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let job = ["queued", "running", "succeeded", "failed", "canceled"];
    for (body, field) in [
        ("JobStatusBody", "status"),
        ("JobAccepted", "status"),
        ("JobResultBody", "overall_status"),
    ] {
        assert_eq!(
            enum_of(&schemas[body]["properties"][field]),
            job,
            "{body}.{field}"
        );
    }
    let outcome = enum_of(&schemas["HistoryAttempt"]["properties"]["outcome"]);
    assert_eq!(
        outcome,
        [
            "running",
            "succeeded",
            "failed",
            "timed_out",
            "interrupted",
            "canceled"
        ]
    );
    app.stop().await;
}
