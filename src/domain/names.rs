//! Validated names and secrets, with Everest's own rules.

use std::fmt;

use rand::Rng;
use rand::seq::IndexedRandom;

/// Namespaces that are never handed to a tenant.
const RESERVED_NAMESPACES: &[&str] = &[
    "everest-system",
    "everest-monitoring",
    "everest-olm",
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
];
const RESERVED_PREFIXES: &[&str] = &["kube-", "openshift-"];
const PASSWORD_ALPHABET: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@*#$%^&+=!_-";

/// An Everest account name: `^[a-zA-Z0-9_]{3,}$`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() < 3 || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err("must match ^[a-zA-Z0-9_]{3,}$ and be at most 64 characters".into());
        }
        Ok(Username(s.to_string()))
    }

    /// Parses a name for a job that changes the account: `admin` is Everest's own administrator.
    pub fn parse_mutable(s: &str) -> Result<Self, String> {
        let name = Self::parse(s)?;
        if name.0 == "admin" {
            return Err(
                "`admin` is Everest's built-in administrator and cannot be managed here".into(),
            );
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Kubernetes namespace name (RFC 1035 label) that passed the namespace policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Namespace(String);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_rfc1035(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    }
}

/// Which namespaces tenants may be given.
#[derive(Debug, Clone, Default)]
pub struct NamespacePolicy {
    denylist: Vec<String>,
    allowed_prefixes: Vec<String>,
}

impl NamespacePolicy {
    pub fn new(denylist: Vec<String>, allowed_prefixes: Vec<String>) -> Self {
        NamespacePolicy {
            denylist,
            allowed_prefixes,
        }
    }

    /// Whether `s` is a well-formed namespace name (the policy aside).
    pub fn is_valid_name(s: &str) -> bool {
        Namespace::is_rfc1035(s)
    }

    pub fn parse(&self, s: &str) -> Result<Namespace, String> {
        if !Namespace::is_rfc1035(s) {
            return Err("must be an RFC 1035 label: ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$".into());
        }
        let reserved = RESERVED_NAMESPACES.contains(&s)
            || RESERVED_PREFIXES.iter().any(|p| s.starts_with(p))
            || self.denylist.iter().any(|d| d == s);
        if reserved {
            return Err(format!(
                "is reserved ({s:?}) and cannot be used for a tenant"
            ));
        }
        if !self.allowed_prefixes.is_empty()
            && !self.allowed_prefixes.iter().any(|p| s.starts_with(p))
        {
            return Err(format!(
                "must start with one of: {}",
                self.allowed_prefixes.join(", ")
            ));
        }
        Ok(Namespace(s.to_string()))
    }
}

/// An Everest password: `^[a-zA-Z0-9@*#$%^&+=!_-]{6,}$`, at most 128. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() < 6 || s.len() > 128 || !s.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)) {
            return Err(
                "must match ^[a-zA-Z0-9@*#$%^&+=!_-]{6,}$ and be at most 128 characters".into(),
            );
        }
        Ok(Password(s.to_string()))
    }

    /// A random 32-character password from Everest's alphabet.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut s: String = (0..32)
            .map(|_| {
                *PASSWORD_ALPHABET
                    .choose(&mut rng)
                    .expect("alphabet is not empty") as char
            })
            .collect();
        // Start with a letter so that no tool mistakes it for an option.
        s.replace_range(
            0..1,
            &((b'a' + rng.random_range(0..26u8)) as char).to_string(),
        );
        Password(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(********)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice_01").is_ok());
        for bad in ["ab", "al-ice", "al ice", "élan", &"a".repeat(65), ""] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert!(Username::parse("admin").is_ok());
        assert!(Username::parse_mutable("admin").is_err());
    }

    #[test]
    fn namespaces_follow_rfc1035_and_policy() {
        let p = NamespacePolicy::new(vec!["prod".into()], vec![]);
        assert!(p.parse("team-a1").is_ok());
        for bad in [
            "1abc",
            "Abc",
            "a_b",
            "abc-",
            &"a".repeat(64),
            "kube-x",
            "openshift-y",
            "default",
            "everest-system",
            "prod",
        ] {
            assert!(p.parse(bad).is_err(), "{bad}");
        }
        let p = NamespacePolicy::new(vec![], vec!["t-".into()]);
        assert!(p.parse("t-alice").is_ok());
        assert!(p.parse("alice").unwrap_err().contains("t-"));
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("abc123").is_ok());
        assert!(Password::parse("a@*#$%^&+=!_-").is_ok());
        for bad in ["abc12", "with space1", "quote'123", &"a".repeat(129)] {
            assert!(Password::parse(bad).is_err(), "{bad}");
        }
        let a = Password::generate();
        assert!(Password::parse(a.expose()).is_ok());
        assert!(a.expose().len() >= 24);
        assert_ne!(a, Password::generate());
        assert_eq!(format!("{a:?}"), "Password(********)");
    }
}
