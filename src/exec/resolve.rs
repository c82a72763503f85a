//! Finding the binary to run, and turning spawn failures into [`ExecError`]s.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ExecError;

/// Resolves `program` to the file that would be executed, checking that it exists and is an
/// executable file.
///
/// A name without `/` is looked up on `PATH` (like a shell does); a name with `/` is used as
/// given, relative to the current directory. Also used by readiness probes, so the errors are
/// meant to be shown to operators as they are.
pub fn resolve_binary(program: &str) -> Result<PathBuf, ExecError> {
    if program.is_empty() {
        return Err(ExecError::NotFound {
            program: String::new(),
            detail: "empty program name".to_owned(),
        });
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        check_executable(program, &path)?;
        return Ok(path);
    }
    match which::which(program) {
        Ok(path) => Ok(path),
        // `which` skips non-executable files: tell "not installed" apart from "not executable".
        Err(_) if non_executable_on_path(program) => Err(ExecError::NotExecutable {
            program: program.to_owned(),
        }),
        Err(_) => Err(ExecError::NotFound {
            program: program.to_owned(),
            detail: "command not found (looked up on PATH)".to_owned(),
        }),
    }
}

fn check_executable(program: &str, path: &Path) -> Result<(), ExecError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(ExecError::NotExecutable {
            program: program.to_owned(),
        }),
        Err(err) if err.kind() == ErrorKind::NotFound => Err(ExecError::NotFound {
            program: program.to_owned(),
            detail: "no such file".to_owned(),
        }),
        Err(err) if err.kind() == ErrorKind::PermissionDenied => Err(ExecError::NotExecutable {
            program: program.to_owned(),
        }),
        Err(err) => Err(ExecError::NotFound {
            program: program.to_owned(),
            detail: err.to_string(),
        }),
    }
}

fn non_executable_on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Classifies an error from spawning `program` (already resolved, so a failure here is a race
/// with the file changing, or something like a bad interpreter line).
pub(crate) fn spawn_error(program: &str, source: std::io::Error) -> ExecError {
    match source.kind() {
        ErrorKind::NotFound => ExecError::NotFound {
            program: program.to_owned(),
            detail: format!("could not be started: {source}"),
        },
        ErrorKind::PermissionDenied => ExecError::NotExecutable {
            program: program.to_owned(),
        },
        _ => ExecError::Spawn {
            program: program.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_path() {
        let path = resolve_binary("sh").expect("sh is on PATH");
        assert!(path.is_absolute());
    }

    #[test]
    fn missing_bare_name_mentions_path() {
        let err = resolve_binary("no-such-binary-for-exec-tests").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no-such-binary-for-exec-tests: command not found (looked up on PATH)"
        );
    }

    #[test]
    fn missing_path_is_not_found() {
        let err = resolve_binary("/no/such/dir/bin").unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }));
        assert_eq!(err.to_string(), "/no/such/dir/bin: no such file");
    }

    #[test]
    fn directory_and_plain_file_are_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        for p in [dir.path(), file.as_path()] {
            let err = resolve_binary(p.to_str().unwrap()).unwrap_err();
            assert!(matches!(err, ExecError::NotExecutable { .. }), "{err}");
        }
    }
}
