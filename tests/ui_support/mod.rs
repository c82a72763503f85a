//! What the dashboard's tests share: a browser's view of the dashboard over HTTP (its session
//! cookie, its form token, our Origin), and a job stored behind the API's back.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Response, StatusCode, redirect};
use serde_json::Value;

use crate::common::{Backend, TestApp};

pub const READ_KEY: &str = "test-key-audit-0123456789";

/// The app on `backend`, with a read-only key `audit` besides the admin keys.
pub async fn start(backend: Backend) -> TestApp {
    TestApp::start_on_with(backend, |c| {
        c.read_api_keys = Some(format!("audit:{READ_KEY}"))
    })
    .await
}

/// A browser's view of the dashboard: no redirects followed, its session cookie sent by hand.
pub struct Browser {
    pub client: Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: String,
}

pub fn client() -> Client {
    Client::builder()
        .redirect(redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The `value` of the first `<input name="{name}" value="…">` of a page.
pub fn input_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..][..page[start..].find('"').unwrap()].to_string()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub fn location(r: &Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Browser {
            client: client(),
            base: app.base.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    /// Signs in with `key` as a browser does (the sign-in form's token, our Origin).
    pub async fn signed_in(app: &TestApp, key: &str) -> Self {
        let mut b = Browser::new(app);
        let r = b.sign_in(key).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()["set-cookie"].to_str().unwrap();
        b.cookie = Some(set.split(';').next().unwrap().to_string());
        let page = b.get("/ui").await.text().await.unwrap();
        b.csrf = input_value(&page, "csrf");
        b
    }

    pub async fn sign_in(&self, key: &str) -> Response {
        let page = self.get("/ui/login").await.text().await.unwrap();
        let token = input_value(&page, "token");
        self.post(
            "/ui/login",
            &[("key", key), ("token", &token), ("next", "/ui")],
            &self.ours(),
        )
        .await
    }

    /// The headers of a same-origin request as Chromium sends it over plain HTTP: `Origin`
    /// without `Sec-Fetch-Site`.
    pub fn ours(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_str(&self.base).unwrap());
        h
    }

    pub async fn get(&self, path: &str) -> Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, pairs: &[(&str, &str)], headers: &HeaderMap) -> Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .headers(headers.clone())
            .body(form(pairs));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }

    /// Posts a form of this session (its token, our Origin).
    pub async fn submit(&self, path: &str, pairs: &[(&str, &str)]) -> Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post(path, &all, &self.ours()).await
    }
}

pub async fn history(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/jobs/{id}/history")).await.1
}

pub fn events_of(history: &Value, kind: &str) -> usize {
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

/// Writes a queued job straight into the database (due in the year 3000, so no worker takes
/// it), with `username` and a summary that say what the API would never accept. `id` and
/// `username` are the test's own literals.
pub async fn insert_job(app: &TestApp, id: &str, username: &str) {
    let sql = format!(
        "INSERT INTO jobs (id, kind, status, inputs, username, namespace, summary, submitted_by,
                           request_id, created_at, updated_at, run_at)
         VALUES ('{id}', 'suspend_user', 'queued', '{{}}', '{username}', NULL,
                 'summary {username}', 'ops', 'r', 1, 1, 32503680000000)"
    );
    app.sandbox.database().execute(&sql).await;
}
