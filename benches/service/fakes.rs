//! The fake CLIs the services run, made of shell builtins so that they cost little.

use std::path::{Path, PathBuf};

/// `everestctl` for the jobs instance: the confirmation lines of `accounts create` and
/// `namespaces add` (`src/everest/confirm.rs`), with shell builtins only.
const FAKE_EVERESTCTL: &str = r#"#!/bin/sh
# Benchmark fake: prints the success line the service checks for; builtins only.
case "$1 $2" in
"accounts create") printf "✅ User '%s' has been created successfully\n\n" "$4" ;;
"namespaces add") printf "✅  Provisioning database namespace '%s'\n" "$3" ;;
*) printf 'bench fake everestctl: unsupported: %s\n' "$*" >&2; exit 1 ;;
esac
"#;

/// `kubectl apply -n NS -f -`: reads the manifest from stdin (builtins only) and exits 0.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
# Benchmark fake: drains the manifest on stdin; builtins only.
case "$1" in
apply)
  while read -r _; do :; done
  printf 'resourcequota/everest-quota configured\nlimitrange/everest-limits configured\n' ;;
*) printf 'bench fake kubectl: unsupported: %s\n' "$*" >&2; exit 1 ;;
esac
"#;

/// `everestctl` for the API instance: the one job its single worker claims never ends, so
/// the worker pool stays out of the way of the submissions.
const BLOCKING_EVERESTCTL: &str = "#!/bin/sh\nexec sleep 3600\n";

/// The fake CLIs in `dir/bin`; returns that folder.
pub fn write_fakes(dir: &Path) -> anyhow::Result<PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for (name, text) in [
        ("everestctl", FAKE_EVERESTCTL),
        ("kubectl", FAKE_KUBECTL),
        ("everestctl-blocking", BLOCKING_EVERESTCTL),
    ] {
        write_executable(&bin.join(name), text)?;
    }
    Ok(bin)
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
