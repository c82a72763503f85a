//! The settings of the operator dashboard (`/ui`).

use std::time::Duration;

/// The dashboard is on (`DASHBOARD=true`, the default) with these settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    /// How long a session lasts from its sign-in (`DASHBOARD_SESSION_TTL_SECONDS`).
    pub session_ttl: Duration,
    /// `DASHBOARD_PUBLIC_URL`, when set.
    pub public_origin: Option<PublicOrigin>,
}

/// The dashboard's origin as browsers see it (`DASHBOARD_PUBLIC_URL`): state-changing requests
/// must come from exactly this origin, and its scheme decides whether the session cookie is
/// `Secure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    /// `scheme://host[:port]`, lower-case, without a default port: the form of an `Origin` header.
    pub origin: String,
    /// `https`.
    pub secure: bool,
}

/// Parses `DASHBOARD_PUBLIC_URL`: `http(s)://host[:port]`, optionally followed by `/`.
pub fn public_origin(url: &str) -> Result<PublicOrigin, String> {
    let lower = url.to_ascii_lowercase();
    let (secure, rest) = if let Some(rest) = lower.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{url:?} does not start with https:// or http://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    if authority.is_empty() || !authority.chars().all(allowed) {
        return Err(format!(
            "{url:?} must be an origin: scheme, host and port only (no path, query or user)"
        ));
    }
    let (host, port) = split_port(authority)?;
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let default_port = if secure { "443" } else { "80" };
    let origin = match port {
        Some(p) if p != default_port => format!("{}://{host}:{p}", scheme(secure)),
        _ => format!("{}://{host}", scheme(secure)),
    };
    Ok(PublicOrigin { origin, secure })
}

fn scheme(secure: bool) -> &'static str {
    if secure { "https" } else { "http" }
}

/// `host[:port]` or `[v6]:port`, with a numeric port.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("port {p:?} is not a number from 0 to 65535"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_become_origins() {
        for (url, origin, secure) in [
            ("https://ops.example.com", "https://ops.example.com", true),
            (
                "https://Ops.Example.com:443/",
                "https://ops.example.com",
                true,
            ),
            (
                "https://ops.example.com:8443",
                "https://ops.example.com:8443",
                true,
            ),
            ("http://10.0.0.5:8080", "http://10.0.0.5:8080", false),
            ("http://[::1]:80", "http://[::1]", false),
        ] {
            let o = public_origin(url).unwrap();
            assert_eq!((o.origin.as_str(), o.secure), (origin, secure), "{url}");
        }
        for bad in [
            "ops.example.com",
            "ftp://x",
            "https://",
            "https://x/ui",
            "https://u@x",
            "https://x?a=1",
            "https://x:port",
        ] {
            assert!(public_origin(bad).is_err(), "{bad}");
        }
    }
}
