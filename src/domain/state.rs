//! The states a job, a step and an attempt go through, and how a failed attempt failed.
//!
//! Each state has exactly one spelling, its `as_str`: the store writes and parses it, the API
//! shows it, metrics label with it and the OpenAPI schema lists it.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Defines a state enum: its spelling, `parse`, `Display`, `Serialize` and OpenAPI schema.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every state, in order.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The one spelling of this state.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The state spelled `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|v| v.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

states! {
    /// Status of a job.
    JobStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
    }
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

states! {
    /// Status of one step of a job.
    StepStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Canceled = "canceled",
        /// Not run: the job ended before it (failed, or nothing was left to do).
        Skipped = "skipped",
    }
}

impl StepStatus {
    /// Whether the step is over and will not run again in this job's current run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Canceled
        )
    }
}

states! {
    /// How one attempt of a step ended.
    AttemptOutcome {
        /// Not ended yet (stored as no outcome).
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
        /// Stopped by the service (shutdown, lost lease, or the process died).
        Interrupted = "interrupted",
        Canceled = "canceled",
    }
}

/// How a failed attempt failed: whether retrying may help.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Worth retrying.
    Transient,
    /// Retrying cannot help; the reason (`cli_failed`, `timeout`, `not_managed`, ...).
    Permanent(Cow<'static, str>),
    /// The attempt was stopped before it could be judged.
    Interrupted,
}

impl ErrorKind {
    const TRANSIENT: &str = "transient";
    const INTERRUPTED: &str = "interrupted";
    const PERMANENT: &str = "permanent:";

    /// The one spelling: `transient`, `interrupted` or `permanent:<reason>`.
    pub fn as_str(&self) -> Cow<'_, str> {
        match self {
            ErrorKind::Transient => Self::TRANSIENT.into(),
            ErrorKind::Interrupted => Self::INTERRUPTED.into(),
            ErrorKind::Permanent(reason) => format!("{}{reason}", Self::PERMANENT).into(),
        }
    }

    /// The kind spelled `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            Self::TRANSIENT => Some(ErrorKind::Transient),
            Self::INTERRUPTED => Some(ErrorKind::Interrupted),
            _ => s
                .strip_prefix(Self::PERMANENT)
                .filter(|reason| !reason.is_empty())
                .map(|reason| ErrorKind::Permanent(reason.to_string().into())),
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl utoipa::PartialSchema for ErrorKind {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("`transient`, `interrupted` or `permanent:<reason>`."))
            .into()
    }
}

impl utoipa::ToSchema for ErrorKind {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_parses_back_from_its_spelling() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in StepStatus::ALL {
            assert_eq!(StepStatus::parse(s.as_str()), Some(*s));
        }
        for s in AttemptOutcome::ALL {
            assert_eq!(AttemptOutcome::parse(s.as_str()), Some(*s));
        }
        assert_eq!(JobStatus::parse("Queued"), None);
        assert_eq!(StepStatus::parse("queued"), None);
    }

    #[test]
    fn error_kinds_parse_back_and_reject_unknown_spellings() {
        for k in [
            ErrorKind::Transient,
            ErrorKind::Interrupted,
            ErrorKind::Permanent("cli_failed".into()),
        ] {
            assert_eq!(ErrorKind::parse(&k.as_str()), Some(k.clone()));
            assert_eq!(serde_json::to_value(&k).unwrap(), k.to_string());
        }
        assert_eq!(
            ErrorKind::as_str(&ErrorKind::Permanent("timeout".into())),
            "permanent:timeout"
        );
        for bad in ["", "permanent:", "permanent", "Transient", "fatal"] {
            assert_eq!(ErrorKind::parse(bad), None, "{bad:?}");
        }
    }
}
