//! The server state file (HAProxy's `server-state-file`): the admin state and run-time weight
//! of every server, so a drain or maintenance set through the API survives a restart.
//!
//! JSON, written whole to a temporary file in the same directory, synced and renamed over the
//! old one, so a crash leaves either the old or the new file. A file that cannot be read or is
//! not ours is reported and ignored: the proxy starts with every server ready.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::AdminState;

/// Marks the file as ours, and its version.
const FORMAT: &str = "proxy-server-state/1";
/// A state file is a few hundred bytes per server; refuse anything absurdly large.
const MAX_LEN: u64 = 16 << 20;

/// One server's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub upstream: String,
    pub address: SocketAddr,
    pub state: AdminState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    servers: Vec<Saved>,
}

/// The saved states; a missing file is an empty list. Errors name the file.
pub fn load(path: &Path) -> Result<Vec<Saved>, String> {
    let what = |e: &dyn std::fmt::Display| format!("state file {}: {e}", path.display());
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(what(&e)),
        Ok(m) if m.len() > MAX_LEN => return Err(what(&"too large to be a state file")),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
    let file: File = serde_json::from_str(&text).map_err(|e| what(&e))?;
    if file.format != FORMAT {
        return Err(what(&format!(
            "format \"{}\" is not \"{FORMAT}\"",
            file.format
        )));
    }
    Ok(file.servers)
}

/// Replace the file atomically with `servers`.
pub fn save(path: &Path, servers: &[Saved]) -> io::Result<()> {
    let file = File {
        format: FORMAT.to_string(),
        servers: servers.to_vec(),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
    text.push('\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("state".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("proxy-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_missing_file() {
        let d = dir("rt");
        let path = d.join("server-state");
        assert_eq!(load(&path), Ok(Vec::new()));
        let saved = vec![Saved {
            upstream: "u".into(),
            address: "127.0.0.1:80".parse().unwrap(),
            state: AdminState::Drain,
            weight: Some(3),
        }];
        save(&path, &saved).unwrap();
        assert_eq!(load(&path), Ok(saved));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn foreign_or_broken_files_are_errors_naming_the_file() {
        let d = dir("bad");
        let path = d.join("server-state");
        for text in [
            "garbage",
            "{\"format\":\"haproxy\",\"servers\":[]}",
            "{\"format\":\"proxy-server-state/1\",\"servers\":[{\"upstream\":\"u\",\"address\":\"x\",\"state\":\"ready\"}]}",
            "{\"format\":\"proxy-server-state/1\",\"servers\":[{\"upstream\":\"u\",\"address\":\"127.0.0.1:1\",\"state\":\"gone\"}]}",
        ] {
            std::fs::write(&path, text).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}
