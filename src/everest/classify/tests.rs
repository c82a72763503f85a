//! Unit tests of `classify`, on the exact texts of `everestctl.md` (§1, §2, §9).

use super::*;

const COBRA_UNKNOWN_FLAG: &str = "\
Error: unknown flag: --operator.mysql
Usage:
  everestctl namespaces add <namespaces> [flags]

Flags:
      --skip-wizard   Skip installation wizard

unknown flag: --operator.mysql
";

const KUBECONFIG_MISSING: &str = "\
❌ open /home/svc/.kube/config: no such file or directory
could not read kubeconfig file

";

const TAKE_OWNERSHIP: &str = "'alice': namespace already exists. HINT: set '--take-ownership' \
                              flag to use existing namespaces";

const CONFLICT: &str = "Operation cannot be fulfilled on secrets \"everest-accounts\": the object \
                        has been modified; please apply your changes to the latest version and \
                        try again";

#[test]
fn pretty_error_on_stderr() {
    assert_eq!(
        error_message("", "❌ user already exists\n\n", Some(1)),
        "user already exists"
    );
    assert_eq!(
        error_message("", KUBECONFIG_MISSING, Some(1)),
        "open /home/svc/.kube/config: no such file or directory; could not read kubeconfig file"
    );
    assert_eq!(
        classify(&error_message("", KUBECONFIG_MISSING, Some(1))),
        Retry::Permanent
    );
}

#[test]
fn cobra_errors_give_the_message_once() {
    assert_eq!(
        error_message("", COBRA_UNKNOWN_FLAG, Some(1)),
        "unknown flag: --operator.mysql"
    );
    let extra = "Error: unknown command \"extra\" for \"everestctl accounts create\"\nUsage:\n  \
                 everestctl accounts create [flags]\n\nunknown command \"extra\" for \"everestctl \
                 accounts create\"\n";
    assert_eq!(
        error_message("", extra, Some(1)),
        "unknown command \"extra\" for \"everestctl accounts create\""
    );
}

#[test]
fn rbac_invalid_is_read_from_stdout() {
    let out = "❌ Invalid\npolicy syntax error - invalid policy line 'this is a bad policy'\n";
    assert_eq!(
        error_message(out, "", Some(1)),
        "policy syntax error - invalid policy line 'this is a bad policy'"
    );
    assert_eq!(error_message("❌ Invalid\n", "", Some(1)), "Invalid");
}

#[test]
fn step_failure_prefers_stderr_and_drops_the_deprecation_warning() {
    let stdout = "❌  Provisioning database namespace 'dev'\n";
    let stderr = "Flag --operator.xtradb-cluster has been deprecated, please use \
                  --operator.mysql instead\n❌ another operation (install/upgrade/rollback) is \
                  in progress\n\n";
    let msg = error_message(stdout, stderr, Some(1));
    assert_eq!(
        msg,
        "another operation (install/upgrade/rollback) is in progress"
    );
    assert_eq!(classify(&msg), Retry::Transient);
}

#[test]
fn fallbacks() {
    assert_eq!(
        error_message(
            "first\n❌  Provisioning database namespace 'dev'\n\n",
            "",
            Some(1)
        ),
        "Provisioning database namespace 'dev'"
    );
    assert_eq!(
        error_message("", " \n\n", Some(3)),
        "exited with code 3 and no output"
    );
    assert_eq!(
        error_message("", "", None),
        "was terminated by a signal and produced no output"
    );
    let only_warning = "Flag --operator.xtradb-cluster has been deprecated, please use \
                        --operator.mysql instead\n";
    assert!(error_message("", only_warning, Some(1)).starts_with("Flag --operator"));
}

#[test]
fn transient_messages() {
    for msg in [
        CONFLICT,
        "failed to get server groups: Get \"https://127.0.0.1:6443/api?timeout=32s\": dial tcp \
         127.0.0.1:6443: connect: connection refused",
        "read tcp 10.0.0.1:5555->10.0.0.2:6443: read: connection reset by peer",
        "dial tcp 10.0.0.2:6443: i/o timeout",
        "net/http: TLS handshake timeout",
        "Unable to connect to the server: net/http: request canceled (Client.Timeout exceeded \
         while awaiting headers)",
        "context deadline exceeded",
        "another operation (install/upgrade/rollback) is in progress",
        "the server is currently unable to handle the request (get secrets everest-accounts)",
        "Internal error occurred: failed calling webhook",
        "Error from server (InternalError): an error on the server (\"\") has prevented the request",
        "Error from server (Timeout): the server was unable to return a response in the time \
         allotted, but may still be processing the request",
        "failed to fetch https://percona.github.io/percona-helm-charts/index.yaml : 503 Service \
         Unavailable",
        "etcdserver: request timed out",
        "Get \"https://10.0.0.2:6443/api\": unexpected EOF",
        "Get \"https://10.0.0.2:6443/api\": EOF",
        "http2: client connection lost",
    ] {
        assert_eq!(classify(msg), Retry::Transient, "{msg}");
    }
}

#[test]
fn permanent_messages() {
    for msg in [
        TAKE_OWNERSHIP,
        "user already exists",
        "account not found",
        "username may contain only letters, numbers, underscores, and must be at least 3 \
         characters long",
        "'everest-system' namespace is reserved for Everest internals. Please specify another \
         namespace",
        "'alice': namespace already exists and is managed by Everest",
        "unknown flag: --operator.mysql",
        "could not open a new TTY: open /dev/tty: no such device or address",
        "secrets \"everest-accounts\" not found; failed to check if account already exists",
        "Get \"https://10.0.0.2:6443/api?timeout=32s\": x509: certificate signed by unknown \
         authority",
        "cannot remove namespace with running database clusters. HINT: use --force to remove \
         the namespace and all its resources",
        "Error from server (NotFound): error when creating \"STDIN\": namespaces \"dev\" not found",
        "open /tmp/eofile.csv: no such file or directory",
        "exited with code 1 and no output",
    ] {
        assert_eq!(classify(msg), Retry::Permanent, "{msg}");
    }
}

#[test]
fn known_outcomes() {
    assert!(is_user_already_exists("user already exists"));
    assert!(is_account_not_found("account not found"));
    assert!(is_namespace_managed_exists(
        "'alice': namespace already exists and is managed by Everest"
    ));
    assert!(!is_namespace_managed_exists(TAKE_OWNERSHIP));
    assert!(is_take_ownership_hint(TAKE_OWNERSHIP));
    assert!(is_namespace_missing("'alice': namespace does not exist"));
    assert!(is_namespace_not_managed(
        "'alice': namespace is not managed by Everest"
    ));
    assert!(!is_namespace_missing(
        "'alice': namespace is not managed by Everest"
    ));
}

#[test]
fn unknown_flags() {
    let msg = error_message("", COBRA_UNKNOWN_FLAG, Some(1));
    assert!(is_unknown_flag(&msg, "--operator.mysql"));
    assert!(is_unknown_flag(&msg, "operator.mysql"));
    assert!(is_unknown_flag(&msg, "--operator.mysql=true"));
    assert!(!is_unknown_flag(&msg, "--operator.my"));
    assert!(!is_unknown_flag(
        "unknown flag: --operator.mysqlx",
        "--operator.mysql"
    ));
    assert!(is_unknown_flag("unknown shorthand flag: 'p' in -p", "-p"));
    assert!(!is_unknown_flag(
        "unknown flag: --take-ownership",
        "--operator.mysql"
    ));
}
