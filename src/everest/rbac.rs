//! The tenant's Casbin policy lines, and small edits of a whole `policy.csv`.
//!
//! Policy syntax (`everestctl.md` §3.2): `p, <subject>, <resource>, <action>, <object>` and
//! `g, <user>, <role>`; blank lines and `#` comments are ignored; fields are comma separated
//! with optional spaces. Lines are compared in a normalized form (fields trimmed, joined by
//! `", "`) so that an edit never duplicates a rule that is only spaced differently.
//!
//! Everest refuses a policy in which a `p` rule names a `role:` subject (other than
//! `role:admin`) that no `g` line grants (`role 'role:x' does not exist`), and the server crashes
//! on an invalid policy. So [`revoke_user`] removes the now-unbound role's rules together with
//! the binding, and records both so that [`add_lines`] can put them back exactly.

/// The built-in administrator role, whose rules Everest adds itself.
pub const ADMIN_ROLE: &str = "role:admin";

/// The role name of a tenant user: `role:<user>`.
pub fn role_name(username: &str) -> String {
    format!("role:{username}")
}

/// The tenant's policy lines: `role:<user>` scoped to namespace `ns`, and the binding of the user
/// to that role (last, so the role's rules precede its grant).
pub fn user_policy_lines(username: &str, ns: &str) -> Vec<String> {
    let role = role_name(username);
    let scoped = format!("{ns}/*");
    let rules: [(&str, &str, &str); 8] = [
        ("namespaces", "read", ns),
        ("database-engines", "read", &scoped),
        ("database-clusters", "*", &scoped),
        ("database-cluster-backups", "*", &scoped),
        ("database-cluster-restores", "*", &scoped),
        ("database-cluster-credentials", "read", &scoped),
        ("backup-storages", "*", &scoped),
        ("monitoring-instances", "*", &scoped),
    ];
    let mut lines: Vec<String> = rules
        .iter()
        .map(|(resource, action, object)| format!("p, {role}, {resource}, {action}, {object}"))
        .collect();
    lines.push(format!("g, {username}, {role}"));
    lines
}

/// Policy text: the lines joined with `"\n"` and a trailing newline (empty input → `""`).
pub fn render_policy(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The fields of a policy line, trimmed; `None` for blank lines and `#` comments.
fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line.split(',').map(str::trim).collect())
}

/// The normalized form of a rule (`"p, a, b, c, d"`); `None` for blank lines and comments.
pub fn normalize_line(line: &str) -> Option<String> {
    fields(line).map(|f| f.join(", "))
}

/// The result of a policy edit: the new text and the lines that were added or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEdit {
    /// The complete new policy text.
    pub policy: String,
    /// Lines added (by [`add_lines`]) or removed (by [`revoke_user`]), trimmed, in file order.
    pub changed: Vec<String>,
}

/// Appends every line of `lines` whose normalized form is not in `policy` yet. The existing
/// text (comments, order, spacing) is kept as is; `changed` lists what was appended. Applying
/// the same lines twice changes nothing the second time.
pub fn add_lines(policy: &str, lines: &[String]) -> PolicyEdit {
    let mut present: Vec<String> = policy.lines().filter_map(normalize_line).collect();
    let mut text = policy.to_owned();
    let mut changed = Vec::new();
    for line in lines {
        let Some(norm) = normalize_line(line) else {
            continue;
        };
        if present.contains(&norm) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line.trim());
        text.push('\n');
        present.push(norm);
        changed.push(line.trim().to_owned());
    }
    PolicyEdit {
        policy: text,
        changed,
    }
}

/// Removes every binding `g, <username>, …` and the `p` rules of each role that those bindings
/// granted and that no remaining `g` line grants (except `role:admin`). Other lines and all
/// comments stay untouched. `changed` holds the removed lines in file order, which is exactly
/// what [`add_lines`] needs to restore them.
pub fn revoke_user(policy: &str, username: &str) -> PolicyEdit {
    let is_binding = |f: &[&str]| f.len() >= 2 && f[0] == "g" && f[1] == username;
    let parsed: Vec<(&str, Option<Vec<&str>>)> = policy.lines().map(|l| (l, fields(l))).collect();

    let mut unbound: Vec<&str> = parsed
        .iter()
        .filter_map(|(_, f)| f.as_deref().filter(|f| is_binding(f)))
        .filter_map(|f| f.get(2).copied())
        .filter(|role| *role != ADMIN_ROLE)
        .collect();
    let still_granted = |role: &str| {
        parsed.iter().any(|(_, f)| {
            f.as_deref()
                .is_some_and(|f| f.len() >= 3 && f[0] == "g" && !is_binding(f) && f[2] == role)
        })
    };
    unbound.retain(|role| !still_granted(role));

    let mut text = String::with_capacity(policy.len());
    let mut changed = Vec::new();
    for (line, f) in &parsed {
        let remove = f.as_deref().is_some_and(|f| {
            is_binding(f) || (f.len() >= 2 && f[0] == "p" && unbound.contains(&f[1]))
        });
        if remove {
            changed.push(line.trim().to_owned());
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !policy.ends_with('\n') && text.ends_with('\n') {
        text.pop();
    }
    PolicyEdit {
        policy: text,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "\
p, role:alice, namespaces, read, dev
p, role:alice, database-engines, read, dev/*
p, role:alice, database-clusters, *, dev/*
p, role:alice, database-cluster-backups, *, dev/*
p, role:alice, database-cluster-restores, *, dev/*
p, role:alice, database-cluster-credentials, read, dev/*
p, role:alice, backup-storages, *, dev/*
p, role:alice, monitoring-instances, *, dev/*
g, alice, role:alice
";

    #[test]
    fn user_policy_matches_the_spec() {
        assert_eq!(render_policy(&user_policy_lines("alice", "dev")), ALICE);
        assert_eq!(render_policy(&[]), "");
    }

    #[test]
    fn normalization() {
        assert_eq!(
            normalize_line("  g,alice ,  role:alice "),
            Some("g, alice, role:alice".into())
        );
        assert_eq!(normalize_line("   "), None);
        assert_eq!(normalize_line(" # comment, with, commas"), None);
    }

    #[test]
    fn add_lines_is_idempotent_and_keeps_existing_text() {
        let base = "# managed by hand\ng, admin, role:admin";
        let lines = user_policy_lines("alice", "dev");
        let first = add_lines(base, &lines);
        assert_eq!(
            first.policy,
            format!("# managed by hand\ng, admin, role:admin\n{ALICE}")
        );
        assert_eq!(first.changed, lines);
        let second = add_lines(&first.policy, &lines);
        assert_eq!(second.policy, first.policy);
        assert!(second.changed.is_empty());
        let spaced = add_lines("g,alice,role:alice\n", &["g, alice, role:alice".into()]);
        assert!(spaced.changed.is_empty());
    }

    #[test]
    fn revoke_removes_binding_and_orphaned_role_then_restores() {
        let base = format!("g, admin, role:admin\n# tenants\n{ALICE}g, bob, role:bob\n");
        let revoked = revoke_user(&base, "alice");
        assert_eq!(
            revoked.policy,
            "g, admin, role:admin\n# tenants\ng, bob, role:bob\n"
        );
        assert_eq!(revoked.changed.len(), 9);
        assert_eq!(revoked.changed.last().unwrap(), "g, alice, role:alice");
        let restored = add_lines(&revoked.policy, &revoked.changed);
        assert_eq!(restored.changed, revoked.changed);
        assert_eq!(
            revoke_user(&restored.policy, "alice").policy,
            revoked.policy
        );
        assert!(revoke_user(&revoked.policy, "alice").changed.is_empty());
    }

    #[test]
    fn revoke_keeps_shared_roles_and_admin() {
        let base = "p, role:ops, database-clusters, read, */*\ng, alice, role:ops\n\
                    g, carol, role:ops\ng, alice, role:admin\ng,alice2,role:x\n";
        let revoked = revoke_user(base, "alice");
        assert_eq!(
            revoked.policy,
            "p, role:ops, database-clusters, read, */*\ng, carol, role:ops\ng,alice2,role:x\n"
        );
        assert_eq!(
            revoked.changed,
            ["g, alice, role:ops", "g, alice, role:admin"]
        );
    }

    #[test]
    fn revoke_keeps_a_missing_final_newline_missing() {
        assert_eq!(
            revoke_user("g, a, role:a\ng, b, role:b", "a").policy,
            "g, b, role:b"
        );
    }

    /// A policy as operators write it: comments, blank lines, odd spacing, IdP groups, and
    /// several tenants. Bootstrapping, suspending and resuming one tenant touches only its lines.
    #[test]
    fn a_real_looking_policy_keeps_everything_but_the_tenants_lines() {
        let original = "# Managed by the platform team. Do not edit by hand.\n\
                        g, admin, role:admin\n\
                        \n\
                        # readers (IdP group)\n\
                        p,role:reader,database-clusters,read,*/*\n\
                        g, platform-readers, role:reader\n\
                        \n\
                        p, role:bob, namespaces, read, bob\n\
                        p,   role:bob, database-clusters, *, bob/*\n\
                        g, bob, role:bob\n";
        let alice = user_policy_lines("alice", "alice");
        let added = add_lines(original, &alice);
        assert!(
            added.policy.starts_with(original),
            "existing text kept byte for byte"
        );
        assert_eq!(added.changed.len(), alice.len());
        assert_eq!(
            add_lines(&added.policy, &alice).policy,
            added.policy,
            "no duplicates"
        );
        // A line already there in another spacing is not added again.
        let respaced = add_lines(
            original,
            &["p, role:bob,database-clusters, *, bob/*".to_string()],
        );
        assert!(respaced.changed.is_empty());

        let revoked = revoke_user(&added.policy, "alice");
        assert_eq!(
            revoked.policy, original,
            "back to the original, byte for byte"
        );
        assert_eq!(
            revoked.changed, alice,
            "exactly alice's lines, in file order"
        );
        let restored = add_lines(&revoked.policy, &revoked.changed);
        assert_eq!(restored.policy, added.policy);

        // Revoking bob leaves alice, the readers and the admin binding alone.
        let without_bob = revoke_user(&added.policy, "bob");
        assert!(without_bob.policy.contains("g, admin, role:admin\n"));
        assert!(
            without_bob
                .policy
                .contains("g, platform-readers, role:reader\n")
        );
        assert!(without_bob.policy.contains("# readers (IdP group)\n"));
        assert!(!without_bob.policy.contains("role:bob"));
        assert!(without_bob.policy.contains("g, alice, role:alice\n"));
    }
}
