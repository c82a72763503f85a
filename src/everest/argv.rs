//! Argument vectors for `everestctl` and `kubectl`, **without** the program name.
//!
//! Every builder passes all values explicitly because the CLI's defaults are traps: the operator
//! flags default to `true`, a missing `-u`/`-p` opens an interactive prompt, and `namespaces add`
//! without `--skip-wizard` and operator flags opens the operator wizard (see `everestctl.md` §1.4
//! and §2.7). Values are separate argv items (never shell-quoted strings), so nothing here needs
//! escaping; callers validate names before building commands.

use crate::domain::Operators;

/// The label `everestctl namespaces add` (through its Helm hook) puts on managed namespaces.
pub const EVEREST_MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=everest";

/// What [`display_command`] shows instead of a secret.
pub const REDACTED: &str = "********";

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `accounts create -u U -p P`.
pub fn accounts_create(username: &str, password: &str) -> Vec<String> {
    owned(&["accounts", "create", "-u", username, "-p", password])
}

/// `accounts set-password -u U -p P` (`-p` is the shorthand of `--new-password`).
pub fn accounts_set_password(username: &str, password: &str) -> Vec<String> {
    owned(&["accounts", "set-password", "-u", username, "-p", password])
}

/// `accounts delete -u U` (the CLI asks for no confirmation).
pub fn accounts_delete(username: &str) -> Vec<String> {
    owned(&["accounts", "delete", "-u", username])
}

/// `accounts list`, with headers: the header line proves the command really ran, because a
/// mistyped subcommand exits 0 with no output.
pub fn accounts_list() -> Vec<String> {
    owned(&["accounts", "list"])
}

/// The three operator flags, always explicit (each defaults to `true` in the CLI).
/// `legacy_mysql_flag` uses `--operator.xtradb-cluster`, the only spelling before everestctl 1.6.
fn operator_flags(ops: &Operators, legacy_mysql_flag: bool) -> [String; 3] {
    let mysql = if legacy_mysql_flag {
        "--operator.xtradb-cluster"
    } else {
        "--operator.mysql"
    };
    [
        format!("--operator.mongodb={}", ops.mongodb),
        format!("--operator.postgresql={}", ops.postgresql),
        format!("{mysql}={}", ops.mysql),
    ]
}

/// `namespaces add NS --skip-wizard --operator.mongodb=B --operator.postgresql=B
/// --operator.mysql=B [--take-ownership]`; with `legacy_mysql_flag` the MySQL flag is
/// `--operator.xtradb-cluster=B` (everestctl < 1.6).
pub fn namespaces_add(
    ns: &str,
    ops: &Operators,
    take_ownership: bool,
    legacy_mysql_flag: bool,
) -> Vec<String> {
    let mut argv = owned(&["namespaces", "add", ns, "--skip-wizard"]);
    argv.extend(operator_flags(ops, legacy_mysql_flag));
    if take_ownership {
        argv.push("--take-ownership".to_owned());
    }
    argv
}

/// `namespaces update NS --operator.mongodb=B --operator.postgresql=B --operator.mysql=B`.
///
/// No `--skip-wizard`: up to 1.12 `update` refuses it when no operator flag is given, and with
/// explicit operator flags it is not needed.
pub fn namespaces_update(ns: &str, ops: &Operators, legacy_mysql_flag: bool) -> Vec<String> {
    let mut argv = owned(&["namespaces", "update", ns]);
    argv.extend(operator_flags(ops, legacy_mysql_flag));
    argv
}

/// `namespaces remove NS [--keep-namespace] [--force]`.
pub fn namespaces_remove(ns: &str, keep_namespace: bool, force: bool) -> Vec<String> {
    let mut argv = owned(&["namespaces", "remove", ns]);
    if keep_namespace {
        argv.push("--keep-namespace".to_owned());
    }
    if force {
        argv.push("--force".to_owned());
    }
    argv
}

/// Namespace and name of Everest's RBAC ConfigMap.
pub const RBAC_CONFIGMAP_NAMESPACE: &str = "everest-system";
pub const RBAC_CONFIGMAP: &str = "everest-rbac";

/// `get configmap everest-rbac -n everest-system -o json`: the whole object, with its
/// `resourceVersion` for an optimistic write back.
pub fn kubectl_get_rbac_configmap() -> Vec<String> {
    owned(&[
        "get",
        "configmap",
        RBAC_CONFIGMAP,
        "-n",
        RBAC_CONFIGMAP_NAMESPACE,
        "-o",
        "json",
    ])
}

/// `replace -f -`: writes the object on stdin; refused with a conflict if its
/// `resourceVersion` is no longer current.
pub fn kubectl_replace_stdin() -> Vec<String> {
    owned(&["replace", "-f", "-"])
}

/// `settings rbac validate --policy-file F`.
pub fn rbac_validate(policy_file: &str) -> Vec<String> {
    owned(&["settings", "rbac", "validate", "--policy-file", policy_file])
}

/// `kubectl apply -n NS -f -` (the manifest goes to stdin).
pub fn kubectl_apply(ns: &str) -> Vec<String> {
    owned(&["apply", "-n", ns, "-f", "-"])
}

/// `kubectl get namespaces -l app.kubernetes.io/managed-by=everest -o json`.
pub fn kubectl_get_managed_namespaces() -> Vec<String> {
    owned(&[
        "get",
        "namespaces",
        "-l",
        EVEREST_MANAGED_SELECTOR,
        "-o",
        "json",
    ])
}

/// A command line for humans and for storage: `program args…`, shell-quoted where needed, with
/// every argument equal to one of `secrets` (non-empty ones) shown as `********`.
///
/// Only whole arguments are redacted, which covers every secret these builders pass (`-p P`);
/// redacting secrets inside captured output is the executor's job.
pub fn display_command(program: &str, args: &[String], secrets: &[&str]) -> String {
    let is_secret = |arg: &str| secrets.iter().any(|s| !s.is_empty() && *s == arg);
    std::iter::once(shell_words::quote(program).into_owned())
        .chain(args.iter().map(|arg| {
            if is_secret(arg) {
                REDACTED.to_owned()
            } else {
                shell_words::quote(arg).into_owned()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Operators = Operators {
        mongodb: true,
        postgresql: true,
        mysql: true,
    };
    const PG: Operators = Operators {
        mongodb: false,
        postgresql: true,
        mysql: false,
    };

    fn line(argv: &[String]) -> String {
        argv.join(" ")
    }

    #[test]
    fn accounts_commands() {
        assert_eq!(
            line(&accounts_create("alice", "s3cret!")),
            "accounts create -u alice -p s3cret!"
        );
        assert_eq!(
            line(&accounts_set_password("alice", "n3w-pass")),
            "accounts set-password -u alice -p n3w-pass"
        );
        assert_eq!(line(&accounts_delete("alice")), "accounts delete -u alice");
        assert_eq!(line(&accounts_list()), "accounts list");
    }

    #[test]
    fn namespaces_add_sets_every_operator_flag() {
        assert_eq!(
            line(&namespaces_add("alice", &PG, false, false)),
            "namespaces add alice --skip-wizard --operator.mongodb=false \
             --operator.postgresql=true --operator.mysql=false"
        );
        assert_eq!(
            line(&namespaces_add("alice", &ALL, true, true)),
            "namespaces add alice --skip-wizard --operator.mongodb=true \
             --operator.postgresql=true --operator.xtradb-cluster=true --take-ownership"
        );
    }

    #[test]
    fn namespaces_update_has_no_skip_wizard() {
        assert_eq!(
            line(&namespaces_update("alice", &PG, false)),
            "namespaces update alice --operator.mongodb=false --operator.postgresql=true \
             --operator.mysql=false"
        );
        assert!(
            namespaces_update("a", &ALL, true).contains(&"--operator.xtradb-cluster=true".into())
        );
    }

    #[test]
    fn namespaces_remove_flags() {
        assert_eq!(
            line(&namespaces_remove("bob", false, false)),
            "namespaces remove bob"
        );
        assert_eq!(
            line(&namespaces_remove("bob", true, true)),
            "namespaces remove bob --keep-namespace --force"
        );
    }

    #[test]
    fn rbac_and_kubectl() {
        assert_eq!(
            line(&rbac_validate("/tmp/p.csv")),
            "settings rbac validate --policy-file /tmp/p.csv"
        );
        assert_eq!(line(&kubectl_apply("alice")), "apply -n alice -f -");
        assert_eq!(
            line(&kubectl_get_managed_namespaces()),
            "get namespaces -l app.kubernetes.io/managed-by=everest -o json"
        );
    }

    #[test]
    fn display_command_redacts_and_quotes() {
        let argv = accounts_create("alice", "p@ss word*");
        assert_eq!(
            display_command("everestctl", &argv, &["p@ss word*"]),
            "everestctl accounts create -u alice -p ********"
        );
        assert_eq!(
            display_command("/opt/my bin/kubectl", &kubectl_apply("a"), &[""]),
            "'/opt/my bin/kubectl' apply -n a -f -"
        );
    }
}
