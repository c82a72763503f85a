//! The dashboard over HTTP: sign-in, expiry and sign-out; the origin and form-token checks of
//! every state-changing request; the security headers; escaping of hostile job data; forms
//! that go through the API's rules; read-only sessions; live events; and the switch that turns
//! the dashboard off. The tests that read or change jobs run on both backends; those about
//! sessions, headers and the switch, which no store changes, on SQLite.

mod common;
mod ui_support;

use std::time::Duration;

use common::{Backend, KEY, TestApp};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use ui_support::{
    Browser, READ_KEY, client, events_of, history, input_value, insert_job, location, start,
};

/// The exact policy every dashboard response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Signing in sets an `HttpOnly`, `SameSite=Strict`, `Secure` cookie with the `__Host-` prefix
/// (and never puts the key in a page); signing out ends the session, so the old cookie is
/// refused afterwards; a wrong key is refused; the JSON API does not take the cookie.
#[tokio::test]
async fn sign_in_and_sign_out() {
    let app = start(Backend::Sqlite).await;
    let anonymous = Browser::new(&app);
    let r = anonymous.get("/ui/jobs?status=failed").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/ui/login?next=%2Fui%2Fjobs%3Fstatus%3Dfailed"
    );

    let r = anonymous.sign_in("test-key-wrong-000000000").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("That key is not valid."));

    let r = anonymous.sign_in(KEY).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login/check?next=%2Fui");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-everestctl_session="), "{set}");
    for attribute in [
        "; Path=/",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Secure",
        "; Max-Age=28800",
    ] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    let mut b = Browser::new(&app);
    b.cookie = Some(set.split(';').next().unwrap().to_string());
    let r = b.get("/ui/login/check?next=%2Fui").await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, "/ui".to_string())
    );
    let page = b.get("/ui").await.text().await.unwrap();
    assert!(page.contains("Signed in as <strong>ops</strong>"), "{page}");
    assert!(!page.contains(KEY));
    b.csrf = input_value(&page, "csrf");

    // The API's auth is unchanged: a session cookie is no key.
    let r = client()
        .get(app.url("/jobs"))
        .header("cookie", b.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = b.submit("/ui/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login?signed_out=1");
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.starts_with("__Host-everestctl_session=;") && cleared.contains("Max-Age=0"));
    // The old cookie, replayed, names no session any more.
    let r = b.get("/ui").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/ui/login?next=%2Fui");
    app.stop().await;
}

/// A session ends after `DASHBOARD_SESSION_TTL_SECONDS`: the next page is the sign-in form,
/// which says why.
#[tokio::test]
async fn sessions_expire() {
    let app = TestApp::start_with(|c| c.dashboard_session_ttl_seconds = 1).await;
    let b = Browser::signed_in(&app, KEY).await;
    assert_eq!(b.get("/ui/jobs").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = b.get("/ui/jobs").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert_eq!(to, "/ui/login?next=%2Fui%2Fjobs&expired=1");
    let page = b.get(&to).await.text().await.unwrap();
    assert!(page.contains("Your session expired"), "{page}");
    // A background fetch of the page's script gets a 401 (it reloads the page).
    let r = b
        .get("/ui/jobs/00000000-0000-7000-8000-000000000000/live")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

both_backends!(forged_requests_are_refused);
/// Every state-changing request, sign-in included, is refused unless the browser says it comes
/// from the dashboard's origin and it carries the form's token.
async fn forged_requests_are_refused(backend: Backend) {
    let app = start(backend).await;
    app.sandbox.ctl("namespaces-add", "delay", "30");
    let job = app.bootstrap(json!({"username": "alice"})).await;
    let b = Browser::signed_in(&app, KEY).await;
    let cancel = format!("/ui/jobs/{job}/cancel");
    let with = |pairs: &[(&str, &str)]| -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    };
    let token = [("csrf", b.csrf.as_str())];
    let ours = b.base.as_str();
    for (why, headers, pairs) in [
        (
            "a foreign Origin",
            with(&[("origin", "http://evil.example")]),
            &token[..],
        ),
        ("an Origin of null", with(&[("origin", "null")]), &token[..]),
        (
            "Sec-Fetch-Site: cross-site",
            with(&[("sec-fetch-site", "cross-site"), ("origin", ours)]),
            &token[..],
        ),
        (
            "Sec-Fetch-Site: same-site",
            with(&[("sec-fetch-site", "same-site")]),
            &token[..],
        ),
        ("neither header", HeaderMap::new(), &token[..]),
        ("no token", with(&[("origin", ours)]), &[][..]),
        (
            "another token",
            with(&[("origin", ours)]),
            &[("csrf", "0".repeat(64).as_str())][..],
        ),
    ] {
        let r = b.post(&cancel, pairs, &headers).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{why}");
        assert!(r.text().await.unwrap().contains("refused"), "{why}");
    }
    let (_, status) = app.get_json(&format!("/jobs/{job}")).await;
    assert!(
        !status["status"].as_str().unwrap().contains("cancel"),
        "{status}"
    );
    assert_eq!(events_of(&history(&app, &job).await, "cancel_requested"), 0);

    // Sign-in too: a foreign origin, and a token this dashboard did not make.
    let anonymous = Browser::new(&app);
    let page = anonymous.get("/ui/login").await.text().await.unwrap();
    let login_token = input_value(&page, "token");
    fn login(token: &str) -> [(&str, &str); 3] {
        [("key", KEY), ("token", token), ("next", "/ui")]
    }
    let r = anonymous
        .post(
            "/ui/login",
            &login(&login_token),
            &with(&[("origin", "http://evil.example")]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());
    let forged = format!(
        "{}.{}",
        &login_token[..login_token.find('.').unwrap()],
        "0".repeat(64)
    );
    let r = anonymous
        .post("/ui/login", &login(&forged), &anonymous.ours())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get("set-cookie").is_none());

    // The same request from our origin, with the token, is done.
    let r = b.submit(&cancel, &[]).await;
    assert_eq!(
        (r.status(), location(&r)),
        (StatusCode::SEE_OTHER, format!("/ui/jobs/{job}"))
    );
    // So is one that Sec-Fetch-Site vouches for (a browser over HTTPS or to localhost).
    let page = b
        .get(&format!("/ui/jobs/{job}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("cancel requested") || page.contains("canceled"),
        "{page}"
    );
    assert_eq!(events_of(&history(&app, &job).await, "cancel_requested"), 1);
    app.stop().await;
}

/// Every page, error page and asset carries the strict CSP and the other headers; pages are
/// never cached and have no inline script, event handler attribute or style attribute.
#[tokio::test]
async fn security_headers() {
    let app = start(Backend::Sqlite).await;
    let job = app.bootstrap(json!({"username": "alice"})).await;
    app.wait_final(&job).await;
    let b = Browser::signed_in(&app, KEY).await;
    let page = b.get("/ui").await.text().await.unwrap();
    let css = page
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let js = page
        .split("<script src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    for path in [
        "/ui/login",
        "/ui",
        "/ui/jobs",
        &format!("/ui/jobs/{job}"),
        &format!("/ui/jobs/{job}/live"),
        "/ui/tenants",
        "/ui/new/bootstrap_user",
        "/ui/nowhere",
        css,
        js,
    ] {
        let r = b.get(path).await;
        let h = r.headers().clone();
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        let asset = path.starts_with("/ui/assets/");
        let cache = h["cache-control"].to_str().unwrap();
        assert_eq!(cache == "no-store", !asset, "{path}: {cache}");
        if asset {
            assert_eq!(cache, "public, max-age=31536000, immutable");
            continue;
        }
        let body = r.text().await.unwrap();
        for script in body.split("<script").skip(1) {
            assert!(
                script.starts_with(" src=\"/ui/assets/app-"),
                "{path}: inline script"
            );
        }
        for attribute in [
            " style=",
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!body.contains(attribute), "{path}: {attribute}");
        }
    }
    app.stop().await;
}

both_backends!(hostile_job_data_is_escaped);
/// Values from a job (a failed command's output, an error text, a username, an account listed by
/// the CLI) are escaped wherever they are shown.
async fn hostile_job_data_is_escaped(backend: Backend) {
    let app = start(backend).await;
    let hostile = "<script>alert(1)</script>";
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;";
    app.sandbox
        .ctl("accounts-create", "fail", &format!("1 1 {hostile}"));
    let job = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&job).await["status"], "failed");
    // A username the API would refuse, stored by something else, with a summary of its own.
    insert_job(
        &app,
        "0193aaaa-0000-7000-8000-000000000001",
        "<script>alert(2)</script>",
    )
    .await;
    // An account the CLI lists (a file name of the fake: no spaces or slashes).
    std::fs::create_dir_all(app.sandbox.state().join("users")).unwrap();
    std::fs::write(app.sandbox.state().join("users/<script>alert(3)"), "pw\n").unwrap();

    let b = Browser::signed_in(&app, KEY).await;
    for (path, shown) in [
        (format!("/ui/jobs/{job}"), escaped),
        ("/ui/jobs".to_string(), escaped),
        ("/ui".to_string(), escaped),
        (
            "/ui/jobs?status=queued".to_string(),
            "&lt;script&gt;alert(2)&lt;/script&gt;",
        ),
        (
            "/ui/jobs/0193aaaa-0000-7000-8000-000000000001".to_string(),
            "&lt;script&gt;alert(2)&lt;/script&gt;",
        ),
        ("/ui/tenants".to_string(), "&lt;script&gt;alert(3)"),
    ] {
        let page = b.get(&path).await.text().await.unwrap();
        assert!(page.contains(shown), "{path} does not show {shown}: {page}");
        assert!(
            !page.contains("<script>alert"),
            "{path} has a live script: {page}"
        );
    }
    app.stop().await;
}

/// `DASHBOARD=false`: nothing under `/ui` answers (404 like any unknown route); the API works.
#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let app = TestApp::start_with(|c| c.dashboard = false).await;
    let b = Browser::new(&app);
    for path in ["/ui", "/ui/", "/ui/login", "/ui/jobs"] {
        let r = b.get(path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(r.headers().get("content-security-policy").is_none());
    }
    let r = b.post("/ui/login", &[("key", KEY)], &b.ours()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get_json("/jobs").await.0, StatusCode::OK);
    app.stop().await;
}

both_backends!(passwords_are_revealed_to_admins_only_and_recorded);
/// A generated password is shown to an admin session only, on a reveal of its own that is
/// recorded as `credentials_read` (by the key's name, with the request id) before it is shown;
/// a read-only session sees every page but the password, and changes nothing.
async fn passwords_are_revealed_to_admins_only_and_recorded(backend: Backend) {
    let app = start(backend).await;
    let job = app.bootstrap(json!({"username": "alice"})).await;
    assert_eq!(app.wait_final(&job).await["status"], "succeeded");
    let page_path = format!("/ui/jobs/{job}");
    let reveal = format!("/ui/jobs/{job}/password");

    let reader = Browser::signed_in(&app, READ_KEY).await;
    let page = reader.get(&page_path).await.text().await.unwrap();
    assert!(page.contains("Read-only keys never see it"), "{page}");
    assert!(!page.contains(&reveal));
    let r = reader.submit(&reveal, &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for path in [
        "/ui/new",
        "/ui/new/bootstrap_user",
        &format!("/ui/jobs/{job}/retry"),
    ] {
        assert_eq!(
            reader.get(path).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let r = reader
        .submit(
            "/ui/new/bootstrap_user",
            &[("username", "bob"), ("action", "submit")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(events_of(&history(&app, &job).await, "credentials_read"), 0);

    let admin = Browser::signed_in(&app, KEY).await;
    let page = admin.get(&page_path).await.text().await.unwrap();
    assert!(page.contains(&reveal), "{page}");
    let r = admin.submit(&reveal, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let shown = r.text().await.unwrap();
    let marker = "readonly value=\"";
    let start = shown.find(marker).expect("the password's field") + marker.len();
    let password = shown[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(password.len() >= 24, "{shown}");
    assert!(shown.contains("expires"), "{shown}");
    // The page itself never carries it.
    assert!(
        !admin
            .get(&page_path)
            .await
            .text()
            .await
            .unwrap()
            .contains(&password)
    );
    let h = history(&app, &job).await;
    let reads: Vec<&Value> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "credentials_read")
        .collect();
    assert_eq!(reads.len(), 1, "{h}");
    assert_eq!(reads[0]["detail"], format!("by ops; request {request_id}"));
    // The same password the API returns.
    assert_eq!(
        app.result(&job).await["credentials"]["password"],
        password.as_str()
    );
    app.stop().await;
}

both_backends!(forms_go_through_the_api);
/// The forms use the API's parsing and validation: a 422 puts each field error at its field,
/// the preview is the dry run (nothing queued), the submission is the API's (with an
/// idempotency key that makes a second click the same job), and other refusals are shown.
async fn forms_go_through_the_api(backend: Backend) {
    let app = start(backend).await;
    let b = Browser::signed_in(&app, KEY).await;
    let blank = b.get("/ui/new/bootstrap_user").await.text().await.unwrap();
    let key = input_value(&blank, "idempotency_key");
    let bootstrap = "/ui/new/bootstrap_user";

    // The domain's rule, at its field.
    let r = b
        .submit(bootstrap, &[("username", "admin"), ("action", "preview")])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    let error_at = |page: &str, field: &str| {
        let marker = format!("id=\"e-f-{field}\">");
        let start = page
            .find(&marker)
            .unwrap_or_else(|| panic!("no error at {field}: {page}"));
        page[start + marker.len()..]
            .split('<')
            .next()
            .unwrap()
            .to_string()
    };
    assert!(
        error_at(&page, "username").contains("built-in administrator"),
        "{page}"
    );
    assert!(page.contains("aria-invalid=\"true\""));
    // The JSON parser's type error, at its field.
    let r = b
        .submit(
            bootstrap,
            &[
                ("username", "alice"),
                ("resources.cpu_cores", "lots"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(
        error_at(&page, "resources-cpu_cores").contains("invalid type"),
        "{page}"
    );

    let alice = [("username", "alice"), ("idempotency_key", key.as_str())];
    let r = b
        .submit(bootstrap, &[&alice[..], &[("action", "preview")]].concat())
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("accounts create -u alice -p ********"),
        "{page}"
    );
    assert!(page.contains("value=\"submit\""));
    assert_eq!(app.rows("jobs").await, 0, "a preview queued a job");

    let r = b
        .submit(bootstrap, &[&alice[..], &[("action", "submit")]].concat())
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let job = location(&r);
    // A second click (or a resubmitted page) is the same job.
    let again = b
        .submit(bootstrap, &[&alice[..], &[("action", "submit")]].concat())
        .await;
    assert_eq!(location(&again), job);
    assert_eq!(app.rows("jobs").await, 1);
    let id = job.trim_start_matches("/ui/jobs/");
    let (_, status) = app.get_json(&format!("/jobs/{id}")).await;
    assert_eq!(
        (status["kind"].as_str(), status["submitted_by"].as_str()),
        (Some("bootstrap_user"), Some("ops"))
    );

    // A refusal that is not about a field: the API's sentence, at the top.
    let r = b
        .submit(
            "/ui/new/resume_user",
            &[("username", "bob"), ("action", "preview")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no successful suspension of bob to resume")
    );
    // Every kind has a form.
    for kind in [
        "set_password",
        "update_resources",
        "add_operators",
        "suspend_user",
        "delete_user",
    ] {
        assert_eq!(
            b.get(&format!("/ui/new/{kind}")).await.status(),
            StatusCode::OK,
            "{kind}"
        );
    }
    app.stop().await;
}

both_backends!(lists_filter_page_and_link);
/// The job list takes the API's filters from the URL (a bad one is shown at its field) and pages
/// with the API's cursor; the tenants page links accounts and namespaces to their jobs.
async fn lists_filter_page_and_link(backend: Backend) {
    let app = start(backend).await;
    for user in ["alice", "bob"] {
        let job = app.bootstrap(json!({"username": user})).await;
        app.wait_final(&job).await;
    }
    let b = Browser::signed_in(&app, KEY).await;
    let page = b
        .get("/ui/jobs?username=alice&status=")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(">alice</a>") && !page.contains(">bob</a>"),
        "{page}"
    );
    let r = b.get("/ui/jobs?username=not+a+name").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("id=\"e-username\">username must match")
    );
    let page = b.get("/ui/jobs?limit=1").await.text().await.unwrap();
    let older = page
        .split("href=\"")
        .find(|l| l.starts_with("/ui/jobs?limit=1&amp;cursor="))
        .unwrap();
    let older = older.split('"').next().unwrap().replace("&amp;", "&");
    let next = b.get(&older).await.text().await.unwrap();
    assert!(
        next.contains(">alice</a>") && next.contains("Newest"),
        "{next}"
    );

    let tenants = b.get("/ui/tenants").await.text().await.unwrap();
    for link in [
        "/ui/jobs?username=alice",
        "/ui/jobs?namespace=bob",
        "/ui/new/suspend_user?username=alice",
    ] {
        assert!(tenants.contains(link), "{link}: {tenants}");
    }
    app.stop().await;
}

both_backends!(job_events_stream_until_the_end);
/// The event stream says when the job changed and ends when it finished; an open stream ends
/// when the service shuts down, so it never holds the shutdown.
async fn job_events_stream_until_the_end(backend: Backend) {
    let app = start(backend).await;
    app.sandbox.ctl("accounts-create", "delay", "0.5");
    let job = app.bootstrap(json!({"username": "alice"})).await;
    let b = Browser::signed_in(&app, KEY).await;
    let r = b.get(&format!("/ui/jobs/{job}/events")).await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("the stream ends once the job has finished")
        .unwrap();
    assert!(body.contains("event: job"), "{body}");
    assert!(
        body.contains("\"final\":true") && body.contains("succeeded"),
        "{body}"
    );

    // A job that stays queued: its stream stays open until the shutdown.
    let waiting = "0193aaaa-0000-7000-8000-000000000002";
    insert_job(&app, waiting, "carol").await;
    let r = b.get(&format!("/ui/jobs/{waiting}/events")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let open = tokio::spawn(async move { r.text().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(15), app.stop()).await;
    assert!(stopped.is_ok(), "an open event stream held the shutdown");
    let _ = open.await;
}
