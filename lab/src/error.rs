//! The lab's error type: every failure says what was being done and, for commands, the command
//! line, its exit status and stderr.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "lab needs root (it creates network namespaces, veth pairs and mounts); run it with sudo"
    )]
    NotRoot,
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inventory(#[from] provision::inventory::InventoryError),
    #[error(transparent)]
    Render(#[from] provision::render::RenderError),
    #[error("lab {0:?} is not up (run `lab up` first)")]
    NotUp(String),
    #[error("lab {id:?} is already up (`lab status` shows it; `lab down` removes it)")]
    AlreadyUp { id: String },
    #[error("invalid lab id {0:?}: use 1-20 characters of a-z, 0-9 and '-'")]
    BadId(String),
    #[error("no host {0:?} in this lab (hosts: {1})")]
    UnknownHost(String, String),
    #[error("host {host:?} has no service {service:?} (it runs: {available})")]
    UnknownService {
        host: String,
        service: String,
        available: String,
    },
    #[error("{what} not found at {}: {hint}", path.display())]
    Missing {
        what: String,
        path: PathBuf,
        hint: String,
    },
    #[error("{service} on {host} did not start: {detail}")]
    ServiceFailed {
        host: String,
        service: String,
        detail: String,
    },
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error("{0}")]
    Other(String),
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
