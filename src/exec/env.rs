//! The environment of a command: built from scratch, never this process's environment whole.
//!
//! This process's environment holds the service's own settings (admin keys, the database path),
//! and whatever a command inherits can be read from `/proc/<pid>/environ` while it runs and is
//! handed to every plugin it starts (kubeconfig exec plugins). So a command gets only what the
//! CLIs and those plugins need ([`BASE`] and the `LC_*` locale variables), the names the caller
//! passes on ([`super::ExecLimits::pass_env`]), then `NO_COLOR=1`, [`super::child_env`] and the
//! command's own [`super::CommandSpec::env`], each overriding the ones before.

use std::ffi::{OsStr, OsString};

/// Variables always passed on when this process has them: lookup of programs, the home folder
/// (kubectl's cache, `~/.kube/config`), the kubeconfig, proxies (both spellings, as Go's and
/// curl's clients read either), locale, time zone, temp folder and user name.
pub const BASE: &[&str] = &[
    "PATH",
    "HOME",
    "KUBECONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
];

/// Whether `name` is passed on without being listed: one of [`BASE`] or a locale category.
pub fn passed_by_default(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    BASE.contains(&name) || name.starts_with("LC_")
}

/// The child's whole environment, in order (a later entry overrides an earlier one of the same
/// name): the variables of `parent` that are [`passed_by_default`] or named in `pass`, then
/// `NO_COLOR=1`, then `startup` ([`super::child_env`]), then `spec` ([`super::CommandSpec::env`]).
pub fn build(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &[String],
    startup: &[(String, String)],
    spec: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let inherited = parent
        .into_iter()
        .filter(|(name, _)| passed_by_default(name) || pass.iter().any(|p| OsStr::new(p) == name));
    // The CLIs' colours are noise in stored output (escapes are stripped anyway).
    let fixed = std::iter::once(("NO_COLOR".into(), "1".into()));
    let set = startup
        .iter()
        .chain(spec)
        .map(|(k, v)| (k.into(), v.into()));
    inherited.chain(fixed).chain(set).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn names(env: &[(OsString, OsString)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.to_str().unwrap()).collect()
    }

    #[test]
    fn keeps_the_base_and_the_listed_names_only() {
        let env = build(
            parent(&[
                ("PATH", "/bin"),
                ("ADMIN_API_KEYS", "ops:secret"),
                ("DATABASE_URL", "sqlite://x"),
                ("LC_TIME", "C"),
                ("https_proxy", "http://p:3128"),
                ("AWS_PROFILE", "prod"),
                ("AWS_SECRET_ACCESS_KEY", "nope"),
                ("LCX", "not a locale"),
            ]),
            &["AWS_PROFILE".into()],
            &[],
            &[],
        );
        assert_eq!(
            names(&env),
            ["PATH", "LC_TIME", "https_proxy", "AWS_PROFILE", "NO_COLOR"]
        );
    }

    #[test]
    fn later_layers_come_after_earlier_ones() {
        let env = build(
            parent(&[("KUBECONFIG", "/from/parent"), ("NO_COLOR", "0")]),
            &[],
            &[("KUBECONFIG".into(), "/in-cluster".into())],
            &[("EXTRA".into(), "x".into())],
        );
        assert_eq!(
            names(&env),
            ["KUBECONFIG", "NO_COLOR", "KUBECONFIG", "EXTRA"]
        );
        assert_eq!(env[2].1, "/in-cluster");
    }
}
