//! Integration tests of `exec::run` with real `/bin/sh -c` scripts.

use std::path::Path;
use std::time::{Duration, Instant};

use everestctl_api::exec::{
    CommandSpec, ExecError, ExecLimits, ExecOutput, Termination, WITHHELD, run,
};
use tokio_util::sync::CancellationToken;

/// Upper bound for any single test; far above what a healthy run needs.
const TEST_LIMIT: Duration = Duration::from_secs(30);

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new(
        "/bin/sh",
        vec!["-c".to_owned(), script.to_owned()],
        Duration::from_secs(20),
    )
}

fn limits() -> ExecLimits {
    ExecLimits {
        max_output_chars: 1000,
        kill_grace: Duration::from_millis(300),
        pass_env: Default::default(),
    }
}

async fn run_spec(spec: &CommandSpec) -> ExecOutput {
    run_with(spec, &CancellationToken::new()).await
}

async fn run_with(spec: &CommandSpec, cancel: &CancellationToken) -> ExecOutput {
    tokio::time::timeout(TEST_LIMIT, run(spec, &limits(), cancel))
        .await
        .expect("run finished within the test limit")
        .expect("command started")
}

/// A spec whose script can write pids to `$PIDS` (one per line).
fn with_pid_file(script: &str, dir: &Path) -> CommandSpec {
    sh(script).with_env("PIDS", dir.join("pids").display().to_string())
}

fn read_pids(dir: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(dir.join("pids")).expect("script wrote its pids");
    text.lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect()
}

/// Dead = gone from /proc, or a zombie waiting for its (new) parent to reap it.
fn is_dead(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// Killing is asynchronous in the kernel: give a dying process a moment to be gone.
async fn assert_dies(pid: i32) {
    for _ in 0..100 {
        if is_dead(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} is still alive");
}

#[tokio::test]
async fn exit_code_and_stderr() {
    let out = run_spec(&sh("echo out; echo err >&2; exit 3")).await;
    assert_eq!(out.termination, Termination::Exited(3));
    assert_eq!(out.exit_code(), Some(3));
    assert!(!out.success());
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(out.command, "/bin/sh -c 'echo out; echo err >&2; exit 3'");
    assert!(run_spec(&sh("true")).await.success());
}

#[tokio::test]
async fn stdin_bytes_or_dev_null() {
    let out = run_spec(&sh("cat").with_stdin(b"hello\nworld".to_vec())).await;
    assert_eq!(out.stdout, "hello\nworld");
    let out = run_spec(&sh("cat")).await;
    assert!(out.success());
    assert_eq!(out.stdout, "");
    // A large stdin the child never reads must not block or fail the run.
    let out = run_spec(&sh("exit 0").with_stdin(vec![b'a'; 4_000_000])).await;
    assert!(out.success());
}

#[tokio::test]
async fn environment_is_inherited_plus_extras() {
    let spec = sh(r#"echo "$NO_COLOR|$EXTRA|${PATH:+path-set}""#).with_env("EXTRA", "value");
    assert_eq!(run_spec(&spec).await.stdout, "1|value|path-set\n");
}

#[tokio::test]
async fn timeout_kills_child_and_grandchild() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = with_pid_file(
        r#"echo $$ > "$PIDS"; sleep 1000 & echo $! >> "$PIDS"; sleep 1000"#,
        dir.path(),
    );
    spec.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let out = run_spec(&spec).await;
    assert_eq!(out.termination, Termination::TimedOut);
    assert_eq!(out.exit_code(), None);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for pid in read_pids(dir.path()) {
        assert_dies(pid).await;
    }
}

#[tokio::test]
async fn timeout_sends_sigterm_first() {
    let mut spec = sh("trap 'echo got-term; exit 7' TERM; sleep 1000 & wait");
    spec.timeout = Duration::from_millis(300);
    let out = run_spec(&spec).await;
    assert_eq!(out.termination, Termination::TimedOut);
    assert_eq!(out.stdout, "got-term\n");
}

#[tokio::test]
async fn sigkill_after_grace_when_sigterm_is_ignored() {
    // The ignored SIGTERM disposition is inherited by `sleep` too.
    let mut spec = sh("trap '' TERM; sleep 1000");
    spec.timeout = Duration::from_millis(200);
    let started = Instant::now();
    let out = run_spec(&spec).await;
    assert_eq!(out.termination, Termination::TimedOut);
    assert!(started.elapsed() >= limits().kill_grace);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn grandchild_holding_stdout_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_pid_file(r#"sleep 1000 & echo $! > "$PIDS"; echo hi"#, dir.path());
    let started = Instant::now();
    let out = run_spec(&spec).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.termination, Termination::Exited(0));
    assert_eq!(out.stdout, "hi\n");
    for pid in read_pids(dir.path()) {
        assert_dies(pid).await;
    }
}

#[tokio::test]
async fn daemon_without_pipes_is_killed_too() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_pid_file(
        r#"sleep 1000 >/dev/null 2>&1 & echo $! > "$PIDS"; echo done"#,
        dir.path(),
    );
    let out = run_spec(&spec).await;
    assert_eq!(out.stdout, "done\n");
    for pid in read_pids(dir.path()) {
        assert_dies(pid).await;
    }
}

#[tokio::test]
async fn dropping_the_run_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_pid_file(
        r#"echo $$ > "$PIDS"; sleep 1000 & echo $! >> "$PIDS"; wait"#,
        dir.path(),
    );
    let (limits, cancel) = (limits(), CancellationToken::new());
    let outer = Duration::from_millis(500);
    let dropped = tokio::time::timeout(outer, run(&spec, &limits, &cancel)).await;
    assert!(dropped.is_err(), "the outer timeout fired first");
    for pid in read_pids(dir.path()) {
        assert_dies(pid).await;
    }
}

#[tokio::test]
async fn output_flood_is_bounded_and_truncated() {
    let spec =
        sh(r"head -c 50000000 /dev/zero | tr '\0' x; head -c 3000000 /dev/zero | tr '\0' y >&2");
    let out = run_spec(&spec).await;
    assert!(out.success());
    let x = "x".repeat(500);
    assert_eq!(
        out.stdout,
        format!("{x}\n[... 49999000 bytes omitted ...]\n{x}")
    );
    let y = "y".repeat(500);
    assert_eq!(
        out.stderr,
        format!("{y}\n[... 2999000 bytes omitted ...]\n{y}")
    );
}

#[tokio::test]
async fn invalid_utf8_and_escapes_are_cleaned() {
    let out = run_spec(&sh(
        r"printf '\033[1;31mred\033[0m \377 ok  \r\n\033]0;title\007end\n'",
    ))
    .await;
    assert_eq!(out.stdout, "red \u{FFFD} ok\nend\n");
}

#[tokio::test]
async fn killed_by_signal() {
    let out = run_spec(&sh("kill -9 $$")).await;
    assert_eq!(out.termination, Termination::Signaled(9));
    assert_eq!(out.exit_code(), None);
}

#[tokio::test]
async fn cancel_stops_a_running_command() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let out = run_with(&sh("sleep 1000"), &cancel).await;
    assert_eq!(out.termination, Termination::Canceled);
    assert!(started.elapsed() < Duration::from_secs(10));

    // Already cancelled: nothing is started.
    let out = run_with(&sh("echo should-not-run"), &cancel).await;
    assert_eq!(out.termination, Termination::Canceled);
    assert_eq!(out.stdout, "");
}

#[tokio::test]
async fn missing_or_unusable_binaries() {
    let cancel = CancellationToken::new();
    let spec = CommandSpec::new("no-such-everestctl-binary", vec![], Duration::from_secs(1));
    let err = run(&spec, &limits(), &cancel).await.unwrap_err();
    assert!(matches!(err, ExecError::NotFound { .. }));
    assert_eq!(
        err.to_string(),
        "no-such-everestctl-binary: command not found (looked up on PATH)"
    );

    let spec = CommandSpec::new("/no/such/everestctl", vec![], Duration::from_secs(1));
    let err = run(&spec, &limits(), &cancel).await.unwrap_err();
    assert_eq!(err.to_string(), "/no/such/everestctl: no such file");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let spec = CommandSpec::new(file.display().to_string(), vec![], Duration::from_secs(1));
    let err = run(&spec, &limits(), &cancel).await.unwrap_err();
    assert!(matches!(err, ExecError::NotExecutable { .. }), "{err}");
}

/// Fields 3 and on of `/proc/<pid>/stat` (after the command name): index 2 is field 5, the process
/// group; 3 the session; 5 the foreground process group of the controlling terminal (-1 if none).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

#[tokio::test]
async fn own_process_group_in_the_service_session() {
    let out = run_spec(&sh(r#"echo "$$ $(cat /proc/$$/stat)""#)).await;
    let (pid, stat) = out.stdout.trim().split_once(' ').expect("pid and stat");
    let child = stat_fields(stat);
    let own_stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own = stat_fields(&own_stat);
    assert_eq!(child[2], pid, "the child leads its process group");
    assert_ne!(child[2], own[2], "not in our process group");
    // A process group only, not a new session (see docs/decisions.md): the child stays in ours.
    assert_eq!(child[3], own[3], "in our session");
    assert_ne!(
        child[5], pid,
        "never the terminal's foreground process group"
    );
}

#[tokio::test]
async fn secrets_are_masked_in_the_display_and_their_lines_withheld_from_output() {
    let spec = sh("echo token=s3cr3t-value; echo kept; echo s3cr3t-value >&2")
        .with_secret("s3cr3t-value")
        .with_secret("");
    let out = run_spec(&spec).await;
    assert_eq!(
        out.command,
        "/bin/sh -c 'echo token=********; echo kept; echo ******** >&2'"
    );
    assert_eq!(out.stdout, format!("{WITHHELD}\nkept\n"));
    assert_eq!(out.stderr, format!("{WITHHELD}\n"));
    // Checks of the output see it as printed.
    assert_eq!(out.matchable_stdout(), "token=s3cr3t-value\nkept\n");
    assert_eq!(out.matchable_stderr(), "s3cr3t-value\n");
}

#[tokio::test]
async fn a_command_gets_only_the_base_environment_and_the_listed_names() {
    // Variables of this test process that no command gets unless they are listed (cargo sets
    // several, e.g. CARGO_MANIFEST_DIR, for every test it runs).
    let mut others: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !everestctl_api::exec::env::passed_by_default(k.as_ref()))
        .collect();
    assert!(others.len() >= 2, "the test needs two unlisted variables");
    let (listed, listed_value) = others.remove(0);
    let limits = ExecLimits {
        pass_env: vec![listed.clone()].into(),
        ..limits()
    };
    let spec = CommandSpec::new("env", vec![], Duration::from_secs(20));
    let out = run(&spec, &limits, &CancellationToken::new())
        .await
        .unwrap();
    let env: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |name: &str| env.iter().any(|(k, _)| *k == name);
    assert!(
        env.contains(&(listed.as_str(), listed_value.as_str())),
        "{env:?}"
    );
    for (name, _) in &others {
        assert!(!has(name), "{name} was not listed: {env:?}");
    }
    for name in ["PATH", "HOME"] {
        assert_eq!(has(name), std::env::var_os(name).is_some(), "{name}");
    }
    assert!(has("NO_COLOR"));
}
