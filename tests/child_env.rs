//! `exec::set_child_env`: the environment the binary computes at startup (the in-cluster
//! `KUBECONFIG`) reaches every command. A test binary of its own, because the setting is
//! process-wide and can be made only once.

use std::time::Duration;

use everestctl_api::exec::{self, CommandSpec, ExecLimits, run};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn child_env_reaches_every_command_and_a_spec_can_override_it() {
    assert!(exec::child_env().is_empty());
    assert!(exec::set_child_env(vec![
        ("KUBECONFIG".into(), "/data/in-cluster.kubeconfig".into()),
        ("EXTRA".into(), "from-startup".into()),
    ]));
    assert!(
        !exec::set_child_env(vec![("KUBECONFIG".into(), "/other".into())]),
        "only the first call counts"
    );
    assert_eq!(exec::child_env()[0].1, "/data/in-cluster.kubeconfig");

    let limits = ExecLimits {
        max_output_chars: 1000,
        kill_grace: Duration::from_millis(300),
        pass_env: Default::default(),
    };
    let script = r#"echo "$KUBECONFIG|$EXTRA|$NO_COLOR""#;
    let spec = CommandSpec::new(
        "/bin/sh",
        vec!["-c".into(), script.into()],
        Duration::from_secs(20),
    );
    let out = run(&spec, &limits, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        out.stdout.trim(),
        "/data/in-cluster.kubeconfig|from-startup|1"
    );

    let spec = spec.with_env("EXTRA", "from-spec");
    let out = run(&spec, &limits, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "/data/in-cluster.kubeconfig|from-spec|1");
}
