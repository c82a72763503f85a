//! The `everestctl-api` binary: parses arguments, loads configuration, sets up logging, runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use everestctl_api::config::{LogFormat, Settings, keys};
use everestctl_api::{exec, kubeconfig};

/// REST API and durable job runner for managing Percona Everest tenants.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Optional TOML configuration file (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the worker pool (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Read an API key from the first line of stdin and print its hashed form, `sha256:<hex>`,
    /// which ADMIN_API_KEYS, READ_API_KEYS and ADMIN_API_KEY accept in place of the key.
    HashKey {
        /// Print the whole list entry, `<NAME>:sha256:<hex>`.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration: it is how a configuration's keys are made.
    if let Some(Command::HashKey { name }) = &cli.command {
        return hash_key(name.as_deref());
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    if matches!(cli.command, None | Some(Command::Serve))
        && let Err(e) = in_cluster_kubeconfig(&settings)
    {
        tracing::error!(error = format!("{e:#}"), "fatal");
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => everestctl_api::app::open_store(&settings).await.map(|_| ()),
            Command::CheckConfig => {
                println!("{settings:#?}");
                Ok(())
            }
            Command::HashKey { .. } => unreachable!("handled before the configuration is loaded"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `hash-key`: the key is read from stdin (never from an argument, which `ps` would show) and
/// checked as the configuration would check it; exit code 2 for a key the service would refuse.
fn hash_key(name: Option<&str>) -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the key from stdin: {e}");
        return ExitCode::from(2);
    }
    let key = line.trim();
    let checked = name
        .map_or(Ok(()), keys::check_name)
        .and_then(|()| keys::check_key(key, name.unwrap_or("(stdin)")));
    if let Err(e) = checked {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match name {
        Some(name) => println!("{name}:{}", keys::hashed(key)),
        None => println!("{}", keys::hashed(key)),
    }
    ExitCode::SUCCESS
}

/// In a Kubernetes pod without a kubeconfig, writes one built from the pod's service account
/// next to the database and gives it to every CLI run as `KUBECONFIG` (everestctl has no
/// in-cluster mode). Runs before the runtime starts, so before any command can be spawned.
fn in_cluster_kubeconfig(settings: &Settings) -> anyhow::Result<()> {
    let dir = settings.database.state_dir();
    match kubeconfig::setup(&dir) {
        Ok(kubeconfig::Outcome::Written(path)) => {
            tracing::info!(path = %path.display(), "in a Kubernetes pod without a kubeconfig: \
                wrote one from the service account; KUBECONFIG is set for everestctl and kubectl");
            exec::set_child_env(vec![("KUBECONFIG".into(), path.display().to_string())]);
            Ok(())
        }
        Ok(kubeconfig::Outcome::Skipped(reason)) => {
            tracing::info!(%reason, "no in-cluster kubeconfig generated");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot write the in-cluster kubeconfig into {}: {e}",
            dir.display()
        )),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    everestctl_api::app::serve(settings, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
