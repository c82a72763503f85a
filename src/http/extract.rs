//! Request extraction with the API's own error envelope: JSON bodies, path parameters and
//! strict query strings.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::ApiError;
use crate::domain::FieldError;

/// A JSON body: 415 for another content type, 413 over the limit, 400 for malformed JSON,
/// 422 (naming the field) for unknown or missing fields and wrong types. Keeps the raw bytes.
pub struct AppJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        let value = parse(&raw)?;
        Ok(AppJson { value, raw })
    }
}

/// Parses a JSON body with the errors of [`AppJson`] (the dashboard's forms come through here
/// too, turned into the JSON body the API would get).
pub(super) fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    // The whole body is checked for syntax first: a typed parse stops at the first wrong type,
    // so `{"username":5 BROKEN` would otherwise be a 422 instead of malformed JSON.
    // serde accepts a struct written as an array; the API only takes objects.
    if !is_object(raw).map_err(|e| malformed(&e))? {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Data => ApiError::Validation(vec![field_error(&path, &inner)]),
            _ => malformed(&inner),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// Checks `raw` for JSON syntax without building a `Value` (which allocated every string of
/// the body) and says whether it is an object. serde_json checks UTF-8 only in the strings it
/// keeps, not in those it skips, so the body is checked first; an invalid one is parsed whole,
/// for serde_json's error and position.
fn is_object(raw: &[u8]) -> Result<bool, serde_json::Error> {
    if std::str::from_utf8(raw).is_err() {
        return serde_json::from_slice::<serde_json::Value>(raw).map(|v| v.is_object());
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)?;
    let first = raw
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    Ok(first == Some(&b'{'))
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("malformed JSON: {e}"))
}

/// Names the field a serde data error is about; unknown/missing fields are named by serde only
/// in the message (`unknown field `x``), so the name is taken from there.
fn field_error(path: &str, e: &serde_json::Error) -> FieldError {
    let text = e.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text).to_string();
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    let field = match named {
        // For unknown fields serde_path_to_error already ends the path with the field.
        Some(name) if parent == name || parent.ends_with(&format!(".{name}")) => parent.to_string(),
        Some(name) if parent.is_empty() => name.to_string(),
        Some(name) => format!("{parent}.{name}"),
        None if parent.is_empty() => "body".to_string(),
        None => parent.to_string(),
    };
    FieldError::new(field, message)
}

/// Parses a query string, refusing parameters that are not in `allowed` or given twice (400).
/// `%XX` escapes are decoded; `+` stays a plus sign (no value of this API contains a space, and
/// `created_after=2026-01-01T00:00:00+01:00` should mean what it says).
pub fn query(raw: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if allowed.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "this route takes no query parameters (got {k:?})"
            )));
        }
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {k:?}; allowed: {}",
                allowed.join(", ")
            )));
        }
        if out.contains_key(&k) {
            return Err(ApiError::BadRequest(format!(
                "query parameter {k:?} is given more than once"
            )));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("malformed percent-encoding in the query: {s:?}"));
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail
                .get(..2)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

/// A boolean query value: `true`/`false`/`1`/`0`, or absent.
pub fn flag(params: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{name} must be true or false, not {other:?}"
        ))),
    }
}

/// A path parameter with the API's envelope on rejection (axum's own answers `text/plain`).
/// A segment that does not decode to UTF-8 (`/jobs/%ff`) names nothing: 404.
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { .. } => ApiError::NotFound(
                    "no such resource: the path is not valid UTF-8 once percent-decoded".into(),
                ),
                _ => ApiError::BadRequest(format!("invalid path: {}", e.body_text())),
            }),
            Err(e) => {
                // Only a route declared without the parameter gets here: a bug, not the client's.
                tracing::error!(error = %e.body_text(), "path parameters are missing");
                Err(ApiError::Internal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        username: String,
    }

    #[test]
    fn a_body_is_a_whole_json_object_in_utf8() {
        assert!(parse::<Body>(b" \n{\"username\": \"alice\", \"extra\": [1, {}]}").is_ok());
        let not_object = parse::<Body>(b" [\"alice\"]");
        assert!(
            matches!(not_object, Err(ApiError::Validation(_))),
            "{not_object:?}"
        );
        // Invalid UTF-8 in a field the typed parse would skip is still malformed JSON.
        for raw in [
            &b"{\"username\": \"alice\", \"extra\": \"\xff\"}"[..],
            b"{\"username\": \"alice\"} x",
            b"{\"username\": \"alice\", \"extra\": [1,]}",
        ] {
            let parsed = parse::<Body>(raw);
            assert!(
                matches!(&parsed, Err(ApiError::BadRequest(m)) if m.starts_with("malformed JSON")),
                "{parsed:?}"
            );
        }
    }
}
