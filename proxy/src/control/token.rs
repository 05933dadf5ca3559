//! The bearer token that admin mutations require, read from `admin_token_file`.
//!
//! The file must be readable by its owner only (like ssh refuses an open private key): a token
//! that any local user can read protects nothing. Under systemd, a service user that cannot
//! read root's file gets it through `LoadCredential=admin.token:/etc/proxy/admin.token`: when
//! `$CREDENTIALS_DIRECTORY` holds a file of the same name, that copy is used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Longest token accepted (a few hundred bytes is plenty; bounds what we read).
const MAX_LEN: u64 = 4096;

/// The token, or why mutations are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Loaded(String),
    /// No usable token: every mutation is refused with this reason.
    Unavailable(String),
}

impl Token {
    /// Reads the token file named by the config (`None`: mutations are disabled).
    pub fn load(file: Option<&Path>) -> Token {
        let Some(configured) = file else {
            return Token::Unavailable(
                "no admin_token_file is configured: run-time changes are disabled".into(),
            );
        };
        let path = credential(configured).unwrap_or_else(|| configured.to_path_buf());
        match read(&path) {
            Ok(t) => Token::Loaded(t),
            Err(e) => Token::Unavailable(e),
        }
    }

    /// Does `presented` (the Bearer credentials) match? Compared in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let Token::Loaded(t) = self else { return false };
        let (a, b) = (t.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The systemd credential of the same file name, when there is one.
fn credential(configured: &Path) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let p = Path::new(&dir).join(configured.file_name()?);
    p.is_file().then_some(p)
}

/// The token in `path` (trimmed), refusing a file that group or others may read or write.
pub fn read(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("admin_token_file {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "admin_token_file {shown} is accessible by group or others (mode {mode:03o}); \
             refusing it: chmod 600 {shown}"
        ));
    }
    if meta.len() > MAX_LEN {
        return Err(format!(
            "admin_token_file {shown} is larger than {MAX_LEN} bytes"
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("admin_token_file {shown}: {e}"))?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "admin_token_file {shown} must hold one token (no spaces), e.g. from \
             `openssl rand -hex 32`"
        ));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_contents() {
        let d = std::env::temp_dir().join(format!("proxy-token-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("admin.token");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::load(Some(&p));
        assert_eq!(t, Token::Loaded("s3cret".into()));
        assert!(t.accepts("s3cret") && !t.accepts("s3cre") && !t.accepts("s3cret2"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let Token::Unavailable(why) = Token::load(Some(&p)) else {
            panic!("a group-readable token file must be refused")
        };
        assert!(
            why.contains(&p.display().to_string()) && why.contains("640"),
            "{why}"
        );
        assert!(!Token::load(None).accepts(""));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "two words").unwrap();
        assert!(matches!(Token::load(Some(&p)), Token::Unavailable(_)));
        std::fs::remove_dir_all(d).unwrap();
    }
}
