//! Parsing the table printed by `everestctl accounts list` (`everestctl.md` §2.2).
//!
//! The CLI has no JSON output. The table has a header line `USER CAPABILITIES ENABLED`,
//! columns padded with spaces (every cell, so lines carry trailing spaces), no borders, and rows
//! in random order (Go map iteration). Capabilities print as a Go slice: `[login]`,
//! `[login apiKey]`, `[]`. The header is required: a mistyped subcommand exits 0 with no output,
//! and an empty list still prints the header.

/// One Everest account, as listed by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub user: String,
    pub capabilities: Vec<String>,
    pub enabled: bool,
}

/// Why an `accounts list` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsParseError {
    /// No output at all (for example a mistyped subcommand, which exits 0 silently).
    #[error("`accounts list` printed nothing; expected a `USER CAPABILITIES ENABLED` header")]
    Empty,
    /// The first line is not the expected header.
    #[error("line 1 of `accounts list` is not the `USER CAPABILITIES ENABLED` header: {line:?}")]
    BadHeader { line: String },
    /// A row that does not read as `<user> [<capabilities>] <true|false>`.
    #[error("cannot parse line {number} of `accounts list`: {line:?}")]
    BadRow { number: usize, line: String },
}

const HEADER: [&str; 3] = ["USER", "CAPABILITIES", "ENABLED"];

/// Reads one row: `^(\S+)\s+\[([^\]]*)\]\s+(true|false)\s*$`.
fn parse_row(line: &str) -> Option<Account> {
    let (user, rest) = line.trim().split_once(char::is_whitespace)?;
    let rest = rest.trim_start().strip_prefix('[')?;
    let (caps, rest) = rest.split_once(']')?;
    let enabled = match rest.trim() {
        "true" => true,
        "false" => false,
        _ => return None,
    };
    let rest_is_spaced = rest.starts_with(char::is_whitespace);
    if !rest_is_spaced || user.contains(['[', ']']) {
        return None;
    }
    Some(Account {
        user: user.to_owned(),
        capabilities: caps.split_whitespace().map(str::to_owned).collect(),
        enabled,
    })
}

/// Parses the default-column table with headers into accounts sorted by user. Blank lines are
/// ignored; any other line that does not parse is an error naming that line (1-based).
pub fn parse_accounts_table(stdout: &str) -> Result<Vec<Account>, AccountsParseError> {
    let mut lines = stdout
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(AccountsParseError::Empty)?;
    if !header.split_whitespace().eq(HEADER) {
        return Err(AccountsParseError::BadHeader {
            line: header.trim_end().to_owned(),
        });
    }
    let mut accounts = lines
        .map(|(number, line)| {
            parse_row(line).ok_or_else(|| AccountsParseError::BadRow {
                number,
                line: line.trim_end().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    accounts.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verbatim sample of `everestctl.md` §2.2.
    const SAMPLE: &str = "USER     CAPABILITIES  ENABLED  \nadmin    [login]       true     \n\
                          alice    [login]       true     \nbob_dev  [login]       true     \n";

    fn account(user: &str, caps: &[&str], enabled: bool) -> Account {
        Account {
            user: user.to_owned(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            enabled,
        }
    }

    #[test]
    fn parses_the_documented_sample() {
        let expected = vec![
            account("admin", &["login"], true),
            account("alice", &["login"], true),
            account("bob_dev", &["login"], true),
        ];
        assert_eq!(parse_accounts_table(SAMPLE).unwrap(), expected);
    }

    #[test]
    fn sorts_random_order_and_reads_all_capability_shapes() {
        let out = "USER     CAPABILITIES   ENABLED  \n\
                   zed      []             false    \n\
                   bob_dev  [login apiKey] true     \n\
                   admin    [login]        true     \n";
        assert_eq!(
            parse_accounts_table(out).unwrap(),
            vec![
                account("admin", &["login"], true),
                account("bob_dev", &["login", "apiKey"], true),
                account("zed", &[], false),
            ]
        );
    }

    #[test]
    fn header_only_is_an_empty_list() {
        assert_eq!(
            parse_accounts_table("USER  CAPABILITIES  ENABLED  \n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn no_output_is_an_error() {
        assert_eq!(parse_accounts_table(""), Err(AccountsParseError::Empty));
        assert_eq!(
            parse_accounts_table("\n  \n"),
            Err(AccountsParseError::Empty)
        );
    }

    #[test]
    fn no_headers_output_is_rejected() {
        let err = parse_accounts_table("admin  [login]       true     \n").unwrap_err();
        assert_eq!(
            err,
            AccountsParseError::BadHeader {
                line: "admin  [login]       true".into()
            }
        );
    }

    #[test]
    fn bad_rows_are_named() {
        for bad in [
            "admin [login] yes",
            "admin login true",
            "[login] true",
            "admin [login true",
            "admin [login]true",
            "admin [login] true extra",
        ] {
            let out = format!("USER  CAPABILITIES  ENABLED\nalice  [login]  true\n{bad}   \n");
            let err = parse_accounts_table(&out).unwrap_err();
            assert_eq!(
                err,
                AccountsParseError::BadRow {
                    number: 3,
                    line: bad.to_owned()
                },
                "{bad}"
            );
            assert!(err.to_string().contains(bad));
        }
    }

    #[test]
    fn serializes_like_the_api() {
        let json = serde_json::to_string(&account("admin", &["login"], true)).unwrap();
        assert_eq!(
            json,
            r#"{"user":"admin","capabilities":["login"],"enabled":true}"#
        );
    }
}
