//! A kubeconfig for running inside a Kubernetes pod.
//!
//! `everestctl` reads only `KUBECONFIG` or `~/.kube/config` and has no in-cluster mode (kubectl
//! has one, everestctl does not). So when the service runs in a pod with a mounted
//! service-account token, and neither `KUBECONFIG` nor `~/.kube/config` gives a kubeconfig, it
//! writes one at startup and both CLIs get `KUBECONFIG` pointing at it:
//!
//! - cluster: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (an IPv6 host in
//!   brackets), `certificate-authority` = the mounted `ca.crt`;
//! - user: `tokenFile` = the mounted `token`, by path, so that the kubelet's token rotation keeps
//!   working (client-go re-reads the file);
//! - context: that cluster and user, in the pod's namespace.
//!
//! The file is JSON (a kubeconfig may be JSON, as any YAML reader accepts it), mode 0600, and
//! holds no secret itself: it only names the token and CA files.
//!
//! [`render`] and [`server_url`] are pure; [`detect`] reads the service-account folder and
//! [`write`] writes the file; [`setup`] does both for the real process environment.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where Kubernetes mounts the pod's service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Name of the generated file in the folder given to [`write`].
pub const FILE_NAME: &str = "in-cluster.kubeconfig";

/// Cluster, user and context name used in the generated kubeconfig.
const NAME: &str = "in-cluster";

/// What an in-cluster kubeconfig needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InCluster {
    /// `https://host:port`.
    pub server: String,
    /// The API server's CA bundle (`ca.crt`).
    pub ca_file: PathBuf,
    /// The service-account token (`token`), read by the CLIs at every use.
    pub token_file: PathBuf,
    /// The pod's namespace, when the `namespace` file is readable.
    pub namespace: Option<String>,
}

/// The decision [`detect`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// Running in a pod without a kubeconfig: generate this one.
    InCluster(InCluster),
    /// Leave the CLIs to their own defaults, for this reason.
    Skip(String),
}

/// The result of [`setup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A kubeconfig was written here; children must get `KUBECONFIG` set to it.
    Written(PathBuf),
    /// Nothing was written, for this reason.
    Skipped(String),
}

/// `https://host:port`, with an IPv6 host in brackets (a host already in brackets is kept).
/// `None` when the host is empty or the port is not a port number.
pub fn server_url(host: &str, port: &str) -> Option<String> {
    let host = host.trim();
    let port: u16 = port.trim().parse().ok().filter(|p| *p != 0)?;
    if host.is_empty() {
        return None;
    }
    if host.contains(':') && !host.starts_with('[') {
        Some(format!("https://[{host}]:{port}"))
    } else {
        Some(format!("https://{host}:{port}"))
    }
}

/// The kubeconfig for `config`, as JSON text.
pub fn render(config: &InCluster) -> String {
    let mut context = serde_json::json!({ "cluster": NAME, "user": NAME });
    if let Some(ns) = &config.namespace {
        context["namespace"] = ns.as_str().into();
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": NAME,
            "cluster": {
                "server": config.server,
                "certificate-authority": config.ca_file.to_string_lossy(),
            },
        }],
        "users": [{
            "name": NAME,
            "user": { "tokenFile": config.token_file.to_string_lossy() },
        }],
        "contexts": [{ "name": NAME, "context": context }],
        "current-context": NAME,
        "preferences": {},
    });
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Decides whether to generate a kubeconfig, the way kubectl decides to use its in-cluster
/// config: only when `KUBECONFIG` is unset (or empty), `home_config` (`~/.kube/config`) does not
/// exist, `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` are set, and `sa_dir` holds a
/// `token` and a `ca.crt`. `env` looks up an environment variable.
pub fn detect(
    env: &dyn Fn(&str) -> Option<String>,
    sa_dir: &Path,
    home_config: Option<&Path>,
) -> Detection {
    let set = |key: &str| env(key).filter(|v| !v.trim().is_empty());
    if set("KUBECONFIG").is_some() {
        return Detection::Skip("KUBECONFIG is set".into());
    }
    if let Some(path) = home_config.filter(|p| p.exists()) {
        return Detection::Skip(format!("{} exists", path.display()));
    }
    let (Some(host), Some(port)) = (
        set("KUBERNETES_SERVICE_HOST"),
        set("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Detection::Skip("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset)".into());
    };
    let Some(server) = server_url(&host, &port) else {
        return Detection::Skip(format!(
            "KUBERNETES_SERVICE_HOST/PORT ({host:?}, {port:?}) do not form a server address"
        ));
    };
    let token_file = sa_dir.join("token");
    let ca_file = sa_dir.join("ca.crt");
    for file in [&token_file, &ca_file] {
        if !file.is_file() {
            return Detection::Skip(format!(
                "no service-account {} (automountServiceAccountToken is off?)",
                file.display()
            ));
        }
    }
    let namespace = std::fs::read_to_string(sa_dir.join("namespace"))
        .ok()
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty());
    Detection::InCluster(InCluster {
        server,
        ca_file,
        token_file,
        namespace,
    })
}

/// Writes [`render`]`(config)` to `dir/`[`FILE_NAME`] with mode 0600 (creating `dir`), replacing
/// any earlier file atomically. Returns the file's absolute path.
pub fn write(dir: &Path, config: &InCluster) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    // A fresh temp file is created with mode 0600; renaming it keeps that mode.
    let mut file = tempfile::NamedTempFile::new_in(&dir)?;
    file.write_all(render(config).as_bytes())?;
    file.as_file().sync_all()?;
    let path = dir.join(FILE_NAME);
    file.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

/// [`detect`] on the process environment and the real service-account folder, then [`write`]
/// into `dir` when running in a pod without a kubeconfig.
pub fn setup(dir: &Path) -> io::Result<Outcome> {
    let env = |key: &str| std::env::var_os(key).map(|v| v.to_string_lossy().into_owned());
    let home_config = env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".kube/config"));
    match detect(&env, Path::new(SERVICE_ACCOUNT_DIR), home_config.as_deref()) {
        Detection::InCluster(config) => write(dir, &config).map(Outcome::Written),
        Detection::Skip(reason) => Ok(Outcome::Skipped(reason)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use serde_json::Value;

    use super::*;

    fn pod_env(host: &str, port: &str) -> HashMap<String, String> {
        HashMap::from([
            ("KUBERNETES_SERVICE_HOST".to_string(), host.to_string()),
            ("KUBERNETES_SERVICE_PORT".to_string(), port.to_string()),
        ])
    }

    fn lookup(env: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
        |key| env.get(key).cloned()
    }

    /// A fake service-account folder with a token, a CA and (optionally) a namespace.
    fn service_account(namespace: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "eyJhbGciOi.fake.token").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        if let Some(ns) = namespace {
            std::fs::write(dir.path().join("namespace"), ns).unwrap();
        }
        dir
    }

    fn in_cluster(detection: Detection) -> InCluster {
        match detection {
            Detection::InCluster(c) => c,
            Detection::Skip(reason) => panic!("expected in-cluster, skipped: {reason}"),
        }
    }

    fn skip_reason(detection: Detection) -> String {
        match detection {
            Detection::Skip(reason) => reason,
            Detection::InCluster(c) => panic!("expected a skip, got {c:?}"),
        }
    }

    #[test]
    fn server_url_brackets_ipv6_and_checks_the_port() {
        assert_eq!(
            server_url("10.96.0.1", "443").as_deref(),
            Some("https://10.96.0.1:443")
        );
        assert_eq!(
            server_url("kubernetes.default.svc", "6443").as_deref(),
            Some("https://kubernetes.default.svc:6443")
        );
        assert_eq!(
            server_url("fd00:10:96::1", "443").as_deref(),
            Some("https://[fd00:10:96::1]:443")
        );
        assert_eq!(
            server_url("[fd00::1]", " 443\n").as_deref(),
            Some("https://[fd00::1]:443")
        );
        assert_eq!(server_url("", "443"), None);
        assert_eq!(server_url("10.96.0.1", "https"), None);
        assert_eq!(server_url("10.96.0.1", "0"), None);
        assert_eq!(server_url("10.96.0.1", "70000"), None);
    }

    #[test]
    fn detects_a_pod_and_reads_its_namespace() {
        let sa = service_account(Some("everestctl-api\n"));
        let env = pod_env("fd00:10:96::1", "443");
        let config = in_cluster(detect(&lookup(&env), sa.path(), None));
        assert_eq!(config.server, "https://[fd00:10:96::1]:443");
        assert_eq!(config.token_file, sa.path().join("token"));
        assert_eq!(config.ca_file, sa.path().join("ca.crt"));
        assert_eq!(config.namespace.as_deref(), Some("everestctl-api"));

        std::fs::remove_file(sa.path().join("namespace")).unwrap();
        let config = in_cluster(detect(&lookup(&env), sa.path(), None));
        assert_eq!(config.namespace, None);
    }

    #[test]
    fn an_explicit_kubeconfig_wins() {
        let sa = service_account(Some("ns"));
        let mut env = pod_env("10.96.0.1", "443");
        env.insert("KUBECONFIG".into(), "/etc/kube/config".into());
        assert!(skip_reason(detect(&lookup(&env), sa.path(), None)).contains("KUBECONFIG"));

        // An empty KUBECONFIG counts as unset, as for kubectl.
        env.insert("KUBECONFIG".into(), String::new());
        in_cluster(detect(&lookup(&env), sa.path(), None));

        let home = tempfile::tempdir().unwrap();
        let home_config = home.path().join(".kube/config");
        in_cluster(detect(&lookup(&env), sa.path(), Some(&home_config)));
        std::fs::create_dir_all(home_config.parent().unwrap()).unwrap();
        std::fs::write(&home_config, "apiVersion: v1\n").unwrap();
        let reason = skip_reason(detect(&lookup(&env), sa.path(), Some(&home_config)));
        assert!(reason.contains(".kube/config"), "{reason}");
    }

    #[test]
    fn outside_a_pod_nothing_is_generated() {
        let sa = service_account(Some("ns"));
        let none = HashMap::new();
        assert!(skip_reason(detect(&lookup(&none), sa.path(), None)).contains("not in"));
        let only_host = HashMap::from([("KUBERNETES_SERVICE_HOST".into(), "10.0.0.1".into())]);
        skip_reason(detect(&lookup(&only_host), sa.path(), None));
        let bad_port = pod_env("10.0.0.1", "https");
        assert!(skip_reason(detect(&lookup(&bad_port), sa.path(), None)).contains("server"));

        let env = pod_env("10.96.0.1", "443");
        let empty = tempfile::tempdir().unwrap();
        assert!(skip_reason(detect(&lookup(&env), empty.path(), None)).contains("token"));
        std::fs::write(empty.path().join("token"), "t").unwrap();
        assert!(skip_reason(detect(&lookup(&env), empty.path(), None)).contains("ca.crt"));
    }

    #[test]
    fn rendered_kubeconfig_has_the_expected_shape() {
        let config = InCluster {
            server: "https://[fd00::1]:443".into(),
            ca_file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
            token_file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
            namespace: Some("everestctl-api".into()),
        };
        let text = render(&config);
        let doc: Value = serde_json::from_str(&text).expect("the kubeconfig is JSON");
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Config");
        assert_eq!(doc["current-context"], "in-cluster");
        let cluster = &doc["clusters"][0];
        assert_eq!(cluster["name"], "in-cluster");
        assert_eq!(cluster["cluster"]["server"], "https://[fd00::1]:443");
        assert_eq!(
            cluster["cluster"]["certificate-authority"],
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        );
        let user = &doc["users"][0];
        assert_eq!(user["name"], "in-cluster");
        assert_eq!(
            user["user"]["tokenFile"],
            "/var/run/secrets/kubernetes.io/serviceaccount/token"
        );
        assert_eq!(
            user["user"].as_object().unwrap().len(),
            1,
            "no inline token"
        );
        let context = &doc["contexts"][0];
        assert_eq!(context["name"], "in-cluster");
        assert_eq!(context["context"]["cluster"], "in-cluster");
        assert_eq!(context["context"]["user"], "in-cluster");
        assert_eq!(context["context"]["namespace"], "everestctl-api");

        let without_ns = render(&InCluster {
            namespace: None,
            ..config
        });
        let doc: Value = serde_json::from_str(&without_ns).unwrap();
        assert!(doc["contexts"][0]["context"].get("namespace").is_none());
    }

    #[test]
    fn written_file_is_private_and_names_the_token_file() {
        let sa = service_account(Some("tenants"));
        let env = pod_env("10.96.0.1", "443");
        let config = in_cluster(detect(&lookup(&env), sa.path(), None));
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("data");
        // An earlier, world-readable file is replaced by a private one.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE_NAME), "old").unwrap();
        std::fs::set_permissions(dir.join(FILE_NAME), std::fs::Permissions::from_mode(0o644))
            .unwrap();

        let path = write(&dir, &config).unwrap();
        assert_eq!(path, dir.join(FILE_NAME));
        assert!(path.is_absolute());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, render(&config));
        assert!(
            !text.contains("fake.token"),
            "the token is referenced, not copied"
        );
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["users"][0]["user"]["tokenFile"],
            sa.path().join("token").to_str().unwrap()
        );
        assert_eq!(doc["contexts"][0]["context"]["namespace"], "tenants");
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn write_creates_the_folder_and_returns_an_absolute_path() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("a/b");
        let config = InCluster {
            server: "https://10.0.0.1:443".into(),
            ca_file: "/ca.crt".into(),
            token_file: "/token".into(),
            namespace: None,
        };
        let path = write(&dir, &config).unwrap();
        assert!(path.is_file() && path.is_absolute());
    }
}
