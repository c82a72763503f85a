//! A bounded, deterministic fuzz of every route against the real app: mutated and random bodies,
//! methods, headers, paths and query strings. The routes, their query parameters and their body
//! schemas come from the app's own OpenAPI document, so a new route is fuzzed without a change
//! here.
//!
//! Asserted for every request: no 5xx; a 4xx carries the JSON error envelope (`error`,
//! `detail`); a rejected request queues nothing (the newest job of `GET /jobs` is unchanged).
//! After the run, `/metrics` is at most a fixed multiple of its size after a warm-up.

mod common;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use common::{KEY, TestApp};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

/// Requests sent (proptest cases); fixed so that CI does the same work on every run.
const CASES: u32 = 2000;
/// Requests before `/metrics` is measured for the first time.
const WARM_UP: usize = 400;
/// How much `/metrics` may grow after the warm-up: every label comes from a closed set, so it
/// grows only by combinations not seen yet, never with what clients send.
const METRICS_GROWTH: usize = 2;

/// One route of the OpenAPI document.
#[derive(Debug, Clone)]
struct Route {
    method: String,
    path: String,
    query: Vec<String>,
    body: Option<Value>,
}

/// One request as sent.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

fn routes(doc: &Value) -> Vec<Route> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect();
            let body = op["requestBody"]["content"]["application/json"]["schema"].clone();
            out.push(Route {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                query,
                body: (!body.is_null()).then_some(body),
            });
        }
    }
    out
}

/// Strings that mean something to the API, so that some generated bodies are accepted and the
/// checks after acceptance run too.
const WORDS: &[&str] = &[
    "alice",
    "bob_dev",
    "tenant-a",
    "admin",
    "kube-system",
    "Passw0rd-x1",
    "",
    "x",
    "true",
    "-rf",
    "%ff",
];

/// A JSON value shaped by `schema` (resolving `$ref`s into `components`), with random values.
fn from_schema(schema: &Value, doc: &Value, depth: u32) -> BoxedStrategy<Value> {
    if let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return from_schema(&doc["components"]["schemas"][name], doc, depth);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            let options: Vec<_> = options.iter().map(|s| from_schema(s, doc, depth)).collect();
            return Union::new(options).boxed();
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let main = types.iter().find(|t| **t != "null").copied();
    let value = match main {
        Some("object") if depth < 4 => object_from_schema(schema, doc, depth),
        Some("array") if depth < 4 => {
            prop::collection::vec(from_schema(&schema["items"], doc, depth + 1), 0..3)
                .prop_map(Value::from)
                .boxed()
        }
        Some("string") => prop_oneof![
            4 => prop::sample::select(WORDS).prop_map(Value::from),
            1 => "[a-z][a-z0-9_-]{0,12}".prop_map(Value::from),
            1 => "\\PC{0,12}".prop_map(Value::from),
        ]
        .boxed(),
        Some("integer") | Some("number") => prop_oneof![
            4 => (0u32..5000).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(|f| json!(f)),
        ]
        .boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::from).boxed(),
        _ => any_json(),
    };
    if types.contains(&"null") {
        prop_oneof![5 => value, 1 => Just(Value::Null)].boxed()
    } else {
        value
    }
}

fn object_from_schema(schema: &Value, doc: &Value, depth: u32) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            let name = name.clone();
            let value = from_schema(s, doc, depth + 1);
            let weight = if required.contains(&name.as_str()) {
                9
            } else {
                1
            };
            prop::option::weighted(weight as f64 / 10.0, value)
                .prop_map(move |v| v.map(|v| (name.clone(), v)))
                .boxed()
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// Any small JSON value.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// `bytes` with at most one random edit: truncated, a byte dropped, inserted or replaced.
fn mutate(bytes: BoxedStrategy<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    (bytes, 0u8..6, any::<prop::sample::Index>(), any::<u8>())
        .prop_map(|(mut b, edit, at, byte)| {
            let i = if b.is_empty() { 0 } else { at.index(b.len()) };
            match edit {
                0 => b.truncate(i),
                1 if !b.is_empty() => {
                    b.remove(i);
                }
                2 => b.insert(i, byte),
                3 if !b.is_empty() => b[i] = byte,
                _ => {}
            }
            b
        })
        .boxed()
}

fn body(route: &Route, doc: &Value) -> BoxedStrategy<Option<Vec<u8>>> {
    let random = prop::collection::vec(any::<u8>(), 0..64);
    let Some(schema) = &route.body else {
        return prop_oneof![6 => Just(None), 1 => random.prop_map(Some)].boxed();
    };
    let shaped = from_schema(schema, doc, 0).prop_map(|v| serde_json::to_vec(&v).unwrap());
    prop_oneof![
        3 => shaped.clone().prop_map(Some),
        4 => mutate(shaped.boxed()).prop_map(Some),
        1 => any_json().prop_map(|v| Some(serde_json::to_vec(&v).unwrap())),
        1 => random.prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn method(route: &Route) -> BoxedStrategy<String> {
    prop_oneof![
        12 => Just(route.method.clone()),
        3 => prop::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"][..])
            .prop_map(String::from),
        2 => "[A-Z]{1,12}",
    ]
    .boxed()
}

fn path(route: &Route, job: &str) -> BoxedStrategy<String> {
    let segment = prop_oneof![
        3 => Just(job.to_string()),
        3 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        2 => "[a-zA-Z0-9._~-]{1,40}",
        2 => "(%[0-9a-fA-F]{2}){1,6}",
        1 => Just(String::new()),
    ];
    let template = route.path.clone();
    let matched = segment.prop_map(move |s| template.replace("{id}", &s));
    prop_oneof![
        12 => matched,
        1 => "/[a-z0-9/%._-]{0,30}",
    ]
    .boxed()
}

fn query(route: &Route) -> BoxedStrategy<Vec<(String, String)>> {
    let mut names: Vec<String> = route.query.clone();
    names.extend(["dry_run", "x", "limit", "wait"].map(String::from));
    let name = prop_oneof![
        6 => prop::sample::select(names),
        1 => "[a-z_]{1,10}",
        1 => "(%[0-9a-fA-F]{2}){1,3}",
    ];
    let value = prop_oneof![
        3 => prop::sample::select(
            &["true", "false", "0", "1", "61", "500", "2026-01-01T00:00:00Z", "queued", ""][..]
        )
        .prop_map(String::from),
        2 => "[a-zA-Z0-9%+:._-]{0,16}",
    ];
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec((name, value), 1..4),
    ]
    .boxed()
}

fn headers() -> BoxedStrategy<Vec<(String, String)>> {
    let auth = prop_oneof![
        12 => Just(Some(("x-admin-key".to_string(), KEY.to_string()))),
        2 => Just(Some(("authorization".to_string(), format!("Bearer {KEY}")))),
        1 => "[ -~]{0,30}".prop_map(|k| Some(("x-admin-key".to_string(), k))),
        1 => Just(None),
    ];
    let content_type = prop_oneof![
        10 => Just(Some("application/json".to_string())),
        1 => Just(Some("application/json; charset=utf-8".to_string())),
        1 => Just(Some("text/plain".to_string())),
        1 => Just(None),
        1 => "[ -~]{0,24}".prop_map(Some),
    ];
    let extra = prop::option::of((
        prop::sample::select(&["idempotency-key", "x-request-id", "accept", "x-fuzz"][..]),
        "[!-~]{0,40}",
    ));
    (auth, content_type, extra)
        .prop_map(|(auth, ct, extra)| {
            let mut h: Vec<(String, String)> = auth.into_iter().collect();
            h.extend(ct.map(|c| ("content-type".to_string(), c)));
            h.extend(extra.map(|(k, v)| (k.to_string(), v)));
            h
        })
        .boxed()
}

fn request(routes: &[Route], doc: &Value, job: &str) -> BoxedStrategy<Req> {
    let per_route: Vec<BoxedStrategy<Req>> = routes
        .iter()
        .map(|r| {
            (method(r), path(r, job), query(r), headers(), body(r, doc))
                .prop_map(|(method, path, query, headers, body)| Req {
                    method,
                    path,
                    query,
                    headers,
                    body,
                })
                .boxed()
        })
        .collect();
    Union::new(per_route).boxed()
}

/// The id of the newest job, through the API.
async fn newest_job(app: &TestApp) -> Value {
    let (status, v) = app.get_json("/jobs?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["items"][0]["job_id"].clone()
}

async fn metrics_size(app: &TestApp) -> usize {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().len()
}

/// Sends `req`; `None` when the client cannot express it (an invalid header value).
async fn send(app: &TestApp, req: &Req) -> Option<(StatusCode, Option<String>, Vec<u8>)> {
    let method = Method::from_bytes(req.method.as_bytes()).ok()?;
    let mut url = app.url(&req.path);
    if !req.query.is_empty() {
        let pairs: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        url = format!("{url}?{}", pairs.join("&"));
    }
    let mut builder = app.client.request(method, url);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some(body) = &req.body {
        builder = builder.body(body.clone());
    }
    let response = builder.build().ok()?;
    let r = app.client.execute(response).await.unwrap();
    let status = r.status();
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    Some((status, ctype, r.bytes().await.unwrap().to_vec()))
}

fn check_envelope(req: &Req, ctype: Option<&str>, body: &[u8]) -> Result<(), String> {
    if req.method == "HEAD" {
        return Ok(());
    }
    if !ctype.is_some_and(|c| c.starts_with("application/json")) {
        return Err(format!("content type {ctype:?}"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON ({e})"))?;
    if !(v["error"].is_string() && v["detail"].is_string()) {
        return Err(format!("no error envelope: {v}"));
    }
    Ok(())
}

#[test]
fn random_requests_to_every_route_are_answered_within_the_contract() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One worker: jobs accepted along the way run, but do not compete with the fuzz for the CPU.
    // Throttling off: the fuzz sends many wrong keys from one address, and the throttle (tested
    // in tests/auth.rs) would otherwise answer every later request with 429.
    let app = rt.block_on(TestApp::start_with(|c| {
        c.worker_concurrency = 1;
        c.auth_failure_limit = 0;
    }));
    let (doc, job) = rt.block_on(async {
        let (status, doc) = app.get_json("/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        // A finished job, so that id-taking routes also see one that exists.
        let job = app.bootstrap(json!({"username": "fuzzbase"})).await;
        app.wait_final(&job).await;
        (doc, job)
    });
    let routes = routes(&doc);
    assert!(routes.len() >= 19, "{routes:?}");
    let strategy = request(&routes, &doc, &job);

    let config = Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let sent = Cell::new(0usize);
    let statuses = RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    let newest = RefCell::new(rt.block_on(newest_job(&app)));
    let warm_metrics = Cell::new(None::<usize>);
    let started = Instant::now();
    let result = runner.run(&strategy, |req| {
        rt.block_on(async {
            let Some((status, ctype, body)) = send(&app, &req).await else {
                return Ok(());
            };
            sent.set(sent.get() + 1);
            *statuses.borrow_mut().entry(status.as_u16()).or_default() += 1;
            let fail = |why: String| {
                TestCaseError::fail(format!(
                    "{status} for {req:?}: {why}; body {}",
                    String::from_utf8_lossy(&body)
                ))
            };
            if status.is_server_error() {
                return Err(fail("a 5xx".into()));
            }
            if status.is_client_error() {
                check_envelope(&req, ctype.as_deref(), &body).map_err(fail)?;
            }
            let now = newest_job(&app).await;
            if !status.is_success() && now != *newest.borrow() {
                return Err(fail(format!("a rejected request queued job {now}")));
            }
            *newest.borrow_mut() = now;
            if sent.get() == WARM_UP {
                warm_metrics.set(Some(metrics_size(&app).await));
            }
            Ok(())
        })
    });
    let elapsed = started.elapsed();
    println!(
        "fuzz: {} requests sent in {:.1}s ({CASES} cases); statuses {:?}",
        sent.get(),
        elapsed.as_secs_f64(),
        statuses.borrow()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let warm = warm_metrics.get().expect("the warm-up ended");
    let end = rt.block_on(metrics_size(&app));
    println!("fuzz: /metrics {warm} bytes after the warm-up, {end} bytes at the end");
    assert!(
        end <= warm * METRICS_GROWTH,
        "/metrics grew from {warm} to {end} bytes"
    );
    rt.block_on(async {
        // The service is still healthy and answers promptly.
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            app.client.get(app.url("/healthz")).send(),
        )
        .await
        .expect("healthz answers")
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        app.stop().await;
    });
}
