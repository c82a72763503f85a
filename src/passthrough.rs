//! Read-only CLI calls answered directly (not as jobs): `everestctl accounts list`.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::everest::{self, argv};
use crate::exec::{self, CommandSpec, ExecError, ExecLimits, ExecOutput, Termination};

/// Why a pass-through read failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

/// The result of a read, with the command that produced it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub data: Value,
    pub source: String,
}

/// Runs `everestctl accounts list` and parses its table (sorted by user). If the CLI prints
/// JSON instead, that JSON is returned as is.
pub async fn accounts_list(settings: &Settings) -> Result<Listing, PassthroughError> {
    let spec = CommandSpec::new(
        &settings.everestctl_bin,
        argv::accounts_list(),
        settings.subprocess_timeout,
    );
    let out = run(&spec, settings).await?;
    let trimmed = out.stdout.trim();
    let data = if trimmed.starts_with('[') || trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| {
            PassthroughError::Failed(format!("unreadable JSON from everestctl: {e}"))
        })?
    } else {
        let accounts = everest::parse_accounts_table(&out.stdout).map_err(|e| {
            PassthroughError::Failed(format!(
                "unexpected output from everestctl accounts list: {e}"
            ))
        })?;
        serde_json::to_value(accounts).expect("accounts serialize")
    };
    Ok(Listing {
        data,
        source: "everestctl accounts list".into(),
    })
}

/// Runs `kubectl get namespaces -l app.kubernetes.io/managed-by=everest -o json`: the
/// namespaces Everest manages, sorted by name.
pub async fn managed_namespaces(settings: &Settings) -> Result<Listing, PassthroughError> {
    let spec = CommandSpec::new(
        &settings.kubectl_bin,
        argv::kubectl_get_managed_namespaces(),
        settings.subprocess_timeout,
    );
    let out = run(&spec, settings).await?;
    let list = everest::parse_namespace_list(&out.stdout)
        .map_err(|e| PassthroughError::Failed(format!("unexpected output from kubectl: {e}")))?;
    let data = list
        .into_iter()
        .map(|n| serde_json::json!({"name": n.name, "created_at": n.created_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))}))
        .collect();
    Ok(Listing {
        data: Value::Array(data),
        source: spec.display(),
    })
}

async fn run(spec: &CommandSpec, settings: &Settings) -> Result<ExecOutput, PassthroughError> {
    // The output is parsed, so it is read whole (see DATA_OUTPUT_LIMIT).
    let limits = ExecLimits {
        max_output_chars: crate::worker::DATA_OUTPUT_LIMIT,
        kill_grace: settings.kill_grace,
        pass_env: settings.cli_env_passthrough.clone(),
    };
    let result = exec::run(spec, &limits, &CancellationToken::new()).await;
    crate::telemetry::cli_invocation(&spec.program, crate::worker::exit_class(&result));
    let out = result.map_err(|e| match e {
        ExecError::NotFound { .. } | ExecError::NotExecutable { .. } => {
            PassthroughError::NotFound(e.to_string())
        }
        ExecError::Spawn { .. } => PassthroughError::Failed(e.to_string()),
    })?;
    match out.termination {
        Termination::Exited(0) => Ok(out),
        Termination::TimedOut | Termination::Canceled => Err(PassthroughError::Timeout(format!(
            "{} did not answer within {}s",
            spec.display(),
            spec.timeout.as_secs()
        ))),
        _ => {
            let message = everest::error_message(&out.stdout, &out.stderr, out.exit_code());
            Err(PassthroughError::Failed(format!(
                "{} failed: {}",
                spec.display(),
                tail(&message, 2000)
            )))
        }
    }
}

/// The last `max` characters of `s`.
fn tail(s: &str, max: usize) -> &str {
    let count = s.chars().count();
    if count <= max {
        return s;
    }
    let start = s
        .char_indices()
        .nth(count - max)
        .map(|(i, _)| i)
        .unwrap_or(0);
    &s[start..]
}
