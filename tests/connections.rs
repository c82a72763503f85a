//! Connection handling: the header-read and idle timeouts, the connection cap (with `/healthz`
//! still served at the cap and long-polls never cut), and `Connection: close` on responses
//! sent before the request's body was read.

mod common;

use std::time::{Duration, Instant};

use common::raw::{closed_within, exchange, read_response};
use common::service::Service;
use common::{KEY, Sandbox, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Room for this test's own sockets; the service raises its own limit at start.
fn raise_own_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
}

const CAP: usize = 64;
const IDLE_SOCKETS: usize = 1000;

#[tokio::test]
async fn healthz_is_served_while_idle_sockets_fill_the_cap() {
    raise_own_fd_limit();
    let sandbox = Sandbox::new();
    let service = Service::start_with(&sandbox, 0, |cmd| {
        cmd.env("MAX_CONNECTIONS", CAP.to_string())
            // Long enough that no idle socket is timed out during the test: only the cap acts.
            .env("HTTP_HEADER_TIMEOUT_SECONDS", "120")
            .env("HTTP_IDLE_TIMEOUT_SECONDS", "120");
    });
    let logs = service.logs();
    assert!(
        logs.contains("connection limits") && logs.contains(&format!("{CAP}")),
        "{logs}"
    );
    let fds_at_start = open_fds(service.pid());
    let target = addr(&service.base);
    let mut idle = Vec::with_capacity(IDLE_SOCKETS);
    for _ in 0..IDLE_SOCKETS {
        idle.push(TcpStream::connect(&target).await.unwrap());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let r = client.get(service.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        latencies.push(started.elapsed());
    }
    // Every idle socket was accepted by now (the probes came after them in the backlog).
    let fds_at_cap = open_fds(service.pid());
    assert!(
        fds_at_cap <= fds_at_start + CAP + 8,
        "the service holds {fds_at_cap} fds (at start {fds_at_start}, cap {CAP})"
    );
    let r = client
        .get(service.url("/metrics"))
        .header("X-Admin-Key", KEY)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let evicted: f64 = text
        .lines()
        .find(|l| l.starts_with("http_connections_closed_total{reason=\"evicted\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(evicted as usize >= IDLE_SOCKETS - CAP, "evicted {evicted}");
    let mut still_open = 0;
    for stream in &mut idle {
        if !closed_within(stream, Duration::from_millis(1)).await {
            still_open += 1;
        }
    }
    assert!(still_open <= CAP, "{still_open} idle sockets still open");
    eprintln!(
        "{IDLE_SOCKETS} idle sockets, cap {CAP}: /healthz took {latencies:?}; service fds \
         {fds_at_start} at start, {fds_at_cap} at the cap; {evicted} evicted, {still_open} of \
         ours still open"
    );
}

#[tokio::test]
async fn a_silent_socket_and_half_a_header_are_closed_after_the_header_timeout() {
    let app = TestApp::start_with(|c| {
        c.http_header_timeout_seconds = 1;
        c.http_idle_timeout_seconds = 60;
    })
    .await;
    let target = addr(&app.base);
    let mut silent = TcpStream::connect(&target).await.unwrap();
    let mut half = TcpStream::connect(&target).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Sl")
        .await
        .unwrap();
    // Closed by the timeout, not at once.
    assert!(!closed_within(&mut silent, Duration::from_millis(300)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(closed_within(&mut half, Duration::from_secs(5)).await);
    // A complete request in time is answered.
    let mut ok = TcpStream::connect(&target).await.unwrap();
    let r = exchange(&mut ok, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::start_with(|c| {
        c.http_header_timeout_seconds = 1;
        c.http_idle_timeout_seconds = 3;
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app.base)).await.unwrap();
    for _ in 0..2 {
        let r = exchange(&mut stream, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), None);
    }
    // Idle between requests counts against the idle timeout, not the header timeout.
    assert!(!closed_within(&mut stream, Duration::from_millis(1800)).await);
    let r = exchange(&mut stream, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("still open before the idle timeout");
    assert_eq!(r.status, 200);
    assert!(closed_within(&mut stream, Duration::from_secs(8)).await);
    app.stop().await;
}

#[tokio::test]
async fn a_long_poll_is_not_evicted_at_the_cap() {
    let app = TestApp::start_with(|c| {
        c.max_connections = 8;
        c.worker_concurrency = 1;
        c.http_header_timeout_seconds = 60;
    })
    .await;
    // The only worker is busy with the first job, so the second stays queued.
    app.sandbox.ctl("accounts-create", "delay", "8");
    let busy = app.bootstrap(json!({"username": "busy"})).await;
    let queued = app.bootstrap(json!({"username": "waiting"})).await;
    let target = addr(&app.base);
    let mut poll = TcpStream::connect(&target).await.unwrap();
    poll.write_all(
        format!("GET /jobs/{queued}?wait=5 HTTP/1.1\r\nHost: t\r\nX-Admin-Key: {KEY}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&target).await.unwrap());
    }
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = read_response(&mut poll)
        .await
        .expect("the long-poll is answered, not cut");
    assert_eq!(r.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["status"], "queued", "{body}");
    app.sandbox.clear_ctl("accounts-create", "delay");
    drop(idle);
    app.wait_final(&busy).await;
    app.stop().await;
}

/// The client sent the headers of a request whose body the server never reads (a wrong key,
/// a declared body over the limit): the answer says `Connection: close`, and the connection
/// then closes, rather than being cut under a client that would reuse it.
#[tokio::test]
async fn an_early_answer_with_an_unread_body_says_connection_close() {
    let app = TestApp::start().await;
    let target = addr(&app.base);
    // The body the client sends before it reads the answer: a start only, or (for the 413)
    // more than the limit but less than it declared.
    let start = "{\"user".to_string();
    let over_limit = format!("{{\"username\": \"{}", "x".repeat(1_100_000));
    for (key, content_type, length, body, want) in [
        (
            "wrong-key-0123456789",
            "application/json",
            50_000,
            &start,
            401,
        ),
        (KEY, "text/plain", 50_000, &start, 415),
        (KEY, "application/json", 1_500_000, &over_limit, 413),
    ] {
        let mut stream = TcpStream::connect(&target).await.unwrap();
        let r = exchange(
            &mut stream,
            &format!(
                "POST /bootstrap/users HTTP/1.1\r\nHost: t\r\nX-Admin-Key: {key}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n{body}"
            ),
        )
        .await
        .unwrap();
        assert_eq!(r.status, want);
        assert_eq!(r.header("connection"), Some("close"), "{want}: {r:?}");
        assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    }
    // A body that was read keeps the connection for the next request.
    let mut stream = TcpStream::connect(&target).await.unwrap();
    let body = r#"{"username": 5}"#;
    let r = exchange(
        &mut stream,
        &format!(
            "POST /bootstrap/users HTTP/1.1\r\nHost: t\r\nX-Admin-Key: {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .unwrap();
    assert!(r.status == 400 || r.status == 422, "{r:?}");
    assert_eq!(r.header("connection"), None);
    let r = exchange(&mut stream, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    app.stop().await;
}
