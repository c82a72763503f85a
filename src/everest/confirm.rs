//! Checking that a command which exited 0 really did its work.
//!
//! `everestctl accounts <typo>` and `everestctl namespaces <typo>` run the parent's no-op
//! command: exit 0, no output (`everestctl.md` §1.1). A success is therefore only believed when
//! the expected `✅` line is on stdout. Runs of spaces are collapsed first because step commands
//! print `✅  <step>` (two spaces) and the spinner may leave other spacing behind.

/// The success line a command prints; the `&str` is the username or namespace it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// `✅ User 'U' has been created successfully`
    AccountCreated(&'a str),
    /// `✅ Password for user 'U' has been set successfully`
    PasswordSet(&'a str),
    /// `✅ User 'U' has been deleted successfully`
    AccountDeleted(&'a str),
    /// `✅  Provisioning database namespace 'NS'`
    NamespaceAdded(&'a str),
    /// `✅  Updating database namespace 'NS'`
    NamespaceUpdated(&'a str),
    /// `✅  Deleting database namespace 'NS'` or, with `--keep-namespace`,
    /// `✅  Deleting resources from namespace 'NS'`
    NamespaceRemoved(&'a str),
    /// `✅ Valid` (`settings rbac validate`)
    PolicyValid,
}

impl Expect<'_> {
    /// The accepted lines (any one suffices), spaces already collapsed.
    fn needles(self) -> Vec<String> {
        match self {
            Expect::AccountCreated(u) => {
                vec![format!("✅ User '{u}' has been created successfully")]
            }
            Expect::PasswordSet(u) => {
                vec![format!(
                    "✅ Password for user '{u}' has been set successfully"
                )]
            }
            Expect::AccountDeleted(u) => {
                vec![format!("✅ User '{u}' has been deleted successfully")]
            }
            Expect::NamespaceAdded(ns) => {
                vec![format!("✅ Provisioning database namespace '{ns}'")]
            }
            Expect::NamespaceUpdated(ns) => vec![format!("✅ Updating database namespace '{ns}'")],
            Expect::NamespaceRemoved(ns) => vec![
                format!("✅ Deleting database namespace '{ns}'"),
                format!("✅ Deleting resources from namespace '{ns}'"),
            ],
            Expect::PolicyValid => vec!["✅ Valid".to_owned()],
        }
    }
}

/// Replaces every run of spaces with one space.
fn collapse_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_space = false;
    for c in text.chars() {
        if c == ' ' && previous_space {
            continue;
        }
        previous_space = c == ' ';
        out.push(c);
    }
    out
}

/// Whether (cleaned) `stdout` contains the success line of `expect`. The `✅` marker is
/// required, so the spinner's failure line `❌  Provisioning database namespace 'NS'` does not
/// count as a success.
pub fn confirms(expect: Expect<'_>, stdout: &str) -> bool {
    let haystack = collapse_spaces(stdout);
    expect
        .needles()
        .iter()
        .any(|needle| haystack.contains(needle.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_lines() {
        let out = "✅ User 'bob' has been created successfully\n\n";
        assert!(confirms(Expect::AccountCreated("bob"), out));
        assert!(!confirms(Expect::AccountCreated("bo"), out));
        assert!(!confirms(Expect::AccountDeleted("bob"), out));
        assert!(confirms(
            Expect::PasswordSet("bob"),
            "✅ Password for user 'bob' has been set successfully\n\n"
        ));
        assert!(confirms(
            Expect::AccountDeleted("bob"),
            "✅ User 'bob' has been deleted successfully\n\n"
        ));
    }

    #[test]
    fn a_mistyped_subcommand_confirms_nothing() {
        for e in [
            Expect::AccountCreated("bob"),
            Expect::NamespaceAdded("dev"),
            Expect::NamespaceRemoved("dev"),
            Expect::PolicyValid,
        ] {
            assert!(!confirms(e, ""));
        }
    }

    #[test]
    fn namespace_step_lines_with_two_spaces() {
        assert!(confirms(
            Expect::NamespaceAdded("dev"),
            "✅  Provisioning database namespace 'dev'\n"
        ));
        // What is left of the spinner once ANSI sequences and \r are stripped.
        assert!(confirms(
            Expect::NamespaceAdded("dev"),
            "⠋ Provisioning database namespace 'dev'✅  Provisioning database namespace 'dev'\n"
        ));
        assert!(!confirms(
            Expect::NamespaceAdded("dev"),
            "❌  Provisioning database namespace 'dev'\n"
        ));
        assert!(confirms(
            Expect::NamespaceUpdated("dev"),
            "⚠️  Removal of an installed operator is not supported. Proceeding without removal.\n\
             ✅  Updating database namespace 'dev'\n"
        ));
    }

    #[test]
    fn namespace_removed_either_variant() {
        let full = "✅  Deleting database clusters in namespace 'dev'\n\
                    ✅  Deleting backup storages in namespace 'dev'\n\
                    ✅  Deleting monitoring instances in namespace 'dev'\n\
                    ✅  Deleting database namespace 'dev'\n";
        assert!(confirms(Expect::NamespaceRemoved("dev"), full));
        let keep = full.replace(
            "Deleting database namespace",
            "Deleting resources from namespace",
        );
        assert!(confirms(Expect::NamespaceRemoved("dev"), &keep));
        assert!(!confirms(Expect::NamespaceRemoved("de"), full));
    }

    #[test]
    fn policy_valid_not_invalid() {
        assert!(confirms(Expect::PolicyValid, "✅ Valid\n\n"));
        assert!(!confirms(
            Expect::PolicyValid,
            "❌ Invalid\npolicy syntax error - invalid policy line 'x'\n"
        ));
    }
}
