//! What a submission did.

/// What happened to a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// A new job was stored.
    Created(String),
    /// The idempotency key was seen before with the same request: the original job.
    Replayed(String),
    /// The idempotency key was seen before with a different request.
    Conflict(String),
    /// The idempotency key was used before the upgrade that keyed the request hash: its
    /// request is unknown, so this one cannot be checked against it.
    Unverifiable(String),
}
