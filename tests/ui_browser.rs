//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! against the app with the fake CLIs. Signs in (with the keyboard), submits a bootstrap from its
//! form (422 field errors first, then the dry-run plan), watches it finish without a reload, opens
//! an attempt's output, cancels a slow job and retries a failed one, checks that the console shows
//! no Content-Security-Policy violation (nor any other error; and that it would show one), and
//! saves screenshots of the overview (light and dark), a form's plan, a job page and the jobs
//! list under `target/ui-screenshots/` (copies are in `docs/dashboard/`).
//!
//! Needs the Debian packages `chromium` and `chromium-driver`. Where they are missing the test
//! is skipped with a `SKIPPED` line on stderr; `EVERESTCTL_TEST_BROWSER=require` (set by
//! `.ci/run`) makes that a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{KEY, TestApp};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on every wait for the page.
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: tokio::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The driver, or `None` (skipped, said on stderr) where the browser is not installed.
async fn driver() -> Option<Driver> {
    let installed = Path::new(CHROMIUM).exists() && which("chromedriver").is_some();
    if !installed {
        let why = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)";
        assert!(
            std::env::var("EVERESTCTL_TEST_BROWSER").as_deref() != Ok("require"),
            "EVERESTCTL_TEST_BROWSER=require, but {why}"
        );
        // Straight to the process's stderr: `eprintln!` is captured for passing tests, and a
        // skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED an_operator_works_in_the_dashboard: {why}; set EVERESTCTL_TEST_BROWSER=require \
             to make this a failure"
        );
        return None;
    }
    // Never --allowed-ips: it would accept connections from other hosts.
    let mut child = tokio::process::Command::new(which("chromedriver").unwrap())
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim_end_matches('.').trim().parse::<u16>().unwrap();
            }
        }
        panic!("chromedriver exited without saying its port");
    })
    .await
    .expect("chromedriver says its port");
    // Keep reading its output, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Driver { child, port })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

/// chromedriver's log of the page's console (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

async fn console(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| format!("{} {}", e["level"], e["message"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `script` (an expression) is true in the page.
async fn until(c: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(&format!("return Boolean({script});"), vec![])
            .await
            .unwrap_or(Value::Bool(false));
        if v == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn screenshot(c: &Client, name: &str, height: u32) {
    c.set_window_size(1280, height).await.unwrap();
    c.execute("window.scrollTo(0, 0); return null;", vec![])
        .await
        .unwrap();
    // The page reflows after the resize.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    c.set_window_size(1280, 900).await.unwrap();
}

/// The job id of the job page the browser shows.
async fn job_id_shown(c: &Client) -> String {
    text(c, "#job-id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_in_the_dashboard() {
    let Some(driver) = driver().await else {
        return;
    };
    let app = TestApp::start().await;
    let c = browser(&driver).await;
    let result = std::panic::AssertUnwindSafe(walk_through(&app, &c));
    let outcome = futures_util::FutureExt::catch_unwind(result).await;
    let _ = c.close().await;
    app.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn click(c: &Client, css: &str) {
    let element = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    element.click().await.unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// The status the job page shows (from the part the script swaps in).
const STATE: &str = "document.querySelector('#job-state')";

async fn until_status(c: &Client, status: &str) {
    let script = format!("{STATE} && {STATE}.dataset.status === '{status}'");
    until(c, &format!("the job to be {status}"), &script).await;
}

async fn walk_through(app: &TestApp, c: &Client) {
    // Signing in: the form, then the overview.
    c.goto(&app.url("/ui")).await.unwrap();
    until(c, "the sign-in form", "document.querySelector('#key')").await;
    // With the keyboard: the key's field has the focus, and Enter submits.
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.attr("id").await.unwrap().as_deref(), Some("key"));
    focused.send_keys(KEY).await.unwrap();
    focused.send_keys(&Key::Enter).await.unwrap();
    until(c, "the overview", "document.querySelector('#status-title')").await;

    // A bootstrap from its form: a 422 at its field first, then the plan, then the job.
    click(c, "a[href='/ui/new']").await;
    click(c, "a[href='/ui/new/bootstrap_user']").await;
    type_into(c, "#f-username", "admin").await;
    click(c, "button[value=preview]").await;
    until(
        c,
        "the field error",
        "document.querySelector('#e-f-username')",
    )
    .await;
    assert!(text(c, "#e-f-username").await.contains("admin"));
    type_into(c, "#f-username", "alice").await;
    // The first step takes a while, so that the page is seen while the job runs.
    app.sandbox.ctl("accounts-create", "delay", "1.5");
    click(c, "button[value=preview]").await;
    until(c, "the plan", "document.querySelector('#plan')").await;
    assert!(
        text(c, "#plan")
            .await
            .contains("accounts create -u alice -p ********")
    );
    screenshot(c, "form", 1500).await;
    click(c, "button[value=submit]").await;
    until(c, "the job page", "document.querySelector('#job')").await;

    // It finishes without a reload: a marker set now is still there when it has succeeded.
    c.execute("window.__sameDocument = true; return null;", vec![])
        .await
        .unwrap();
    until_status(c, "succeeded").await;
    let same = c
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, Value::Bool(true), "the page was reloaded");
    assert_eq!(text(c, ".status-line .badge").await, "✓ succeeded");
    let alice = job_id_shown(c).await;

    // An attempt's output opens.
    click(c, "details.attempt summary").await;
    let stdout = "details.attempt[open] pre[id^=out-]";
    until(
        c,
        "the output",
        &format!("document.querySelector('{stdout}')"),
    )
    .await;
    let out = text(c, stdout).await;
    assert!(out.contains("created"), "{out}");
    screenshot(c, "job", 1700).await;

    // Cancel a slow job while it runs, through the dialog.
    app.sandbox.clear_ctl("accounts-create", "delay");
    app.sandbox.ctl("namespaces-add", "delay", "60");
    let slow = app.bootstrap(json!({"username": "bob"})).await;
    c.goto(&app.url(&format!("/ui/jobs/{slow}"))).await.unwrap();
    let second_step = format!("{STATE}.dataset.step === 'add_namespace'");
    until(c, "the slow job's second step", &second_step).await;
    let dialog = "document.querySelector('#cancel-dialog').open";
    click(c, "a[data-dialog=cancel-dialog]").await;
    until(c, "the dialog", dialog).await;
    // It opens on its safe button, and Escape closes it without cancelling anything.
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Keep it");
    focused.send_keys(&Key::Escape).await.unwrap();
    until(c, "the dialog to close", &format!("!{dialog}")).await;
    assert_eq!(
        app.get_json(&format!("/jobs/{slow}")).await.1["status"],
        "running"
    );
    click(c, "a[data-dialog=cancel-dialog]").await;
    until(c, "the dialog", dialog).await;
    click(c, "#cancel-dialog button.primary").await;
    until_status(c, "canceled").await;
    app.sandbox.clear_ctl("namespaces-add", "delay");

    // Retry a failed job, through the dialog; its error (hostile text) is shown as text.
    app.sandbox.ctl(
        "accounts-create",
        "fail",
        "1 1 boom <script>alert(1)</script>",
    );
    let failing = app.bootstrap(json!({"username": "carol"})).await;
    assert_eq!(app.wait_final(&failing).await["status"], "failed");
    c.goto(&app.url(&format!("/ui/jobs/{failing}")))
        .await
        .unwrap();
    until_status(c, "failed").await;
    assert!(
        text(c, ".error-box")
            .await
            .contains("<script>alert(1)</script>")
    );
    click(c, "a[data-dialog=retry-dialog]").await;
    until(
        c,
        "the dialog",
        "document.querySelector('#retry-dialog').open",
    )
    .await;
    click(c, "#retry-dialog button.primary").await;
    until_status(c, "succeeded").await;

    // Screenshots of the list and the overview, with a failed job and a running one.
    let refused = "1 1 the cluster refused the account: quota of accounts reached";
    app.sandbox.ctl("accounts-create", "fail", refused);
    let failed = app.bootstrap(json!({"username": "erin"})).await;
    assert_eq!(app.wait_final(&failed).await["status"], "failed");
    app.sandbox.ctl("namespaces-add", "delay", "60");
    let running = app.bootstrap(json!({"username": "dave"})).await;
    let deadline = Instant::now() + WAIT;
    while app.get_json(&format!("/jobs/{running}")).await.1["current_step"] != "add_namespace" {
        assert!(
            Instant::now() < deadline,
            "the job did not reach its second step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.goto(&app.url("/ui/jobs")).await.unwrap();
    let five = "document.querySelectorAll('table.jobs tbody tr').length === 5";
    until(c, "the list", five).await;
    screenshot(c, "jobs", 900).await;
    c.goto(&app.url("/ui")).await.unwrap();
    until(
        c,
        "the overview",
        "document.querySelector('#running-title')",
    )
    .await;
    screenshot(c, "overview", 1100).await;
    // The dark palette, chosen with the theme button (it cycles system, light, dark).
    click(c, "#theme-toggle").await;
    click(c, "#theme-toggle").await;
    let dark = "document.documentElement.dataset.theme === 'dark'";
    until(c, "the dark theme", dark).await;
    screenshot(c, "overview-dark", 1100).await;
    c.goto(&app.url(&format!("/ui/jobs/{alice}")))
        .await
        .unwrap();
    until(c, "the job page", "document.querySelector('#job')").await;
    // Not left running for the shutdown to wait for.
    let cancel = app.url(&format!("/jobs/{running}/cancel"));
    let r = app
        .client
        .post(cancel)
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // The 422 of the invalid form is the one error expected (Chromium logs every 4xx page).
    let log = console(c).await;
    let expected = "the server responded with a status of 422";
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("SEVERE") || l.contains("Content Security Policy"))
        .filter(|l| !l.contains(expected))
        .collect();
    assert!(bad.is_empty(), "console errors: {bad:#?}");

    // The check sees a violation: an inline script added to the page is refused and logged
    // (nothing is fetched; the policy stops it first).
    let inject = "const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; \
                  document.body.appendChild(s); return window.__ran === undefined;";
    assert_eq!(
        c.execute(inject, vec![]).await.unwrap(),
        Value::Bool(true),
        "inline script ran"
    );
    let log = console(c).await;
    assert!(
        log.iter().any(|l| l.contains("Content Security Policy")),
        "no violation logged: {log:#?}"
    );
}
