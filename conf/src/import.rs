//! What `proxy import` and `vrrp import` share: the report of what could not be carried over,
//! the exit status it implies, and writing TOML text by hand (the generated file carries
//! comments where something was dropped, which a serializer cannot place).

use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use crate::block::{Directive, Note};

/// One report line: something of the old configuration the new one does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// `file:line` of the directive.
    pub at: String,
    /// The directive's name (`ssl_certificate`, `virtual_server`, ...).
    pub directive: String,
    /// What happens instead.
    pub instead: String,
}

impl Loss {
    pub fn new(d: &Directive, instead: impl Into<String>) -> Self {
        Loss {
            at: d.at(),
            directive: d.name.clone(),
            instead: instead.into(),
        }
    }

    /// An include the parser could not read.
    pub fn from_note(n: &Note) -> Self {
        Loss {
            at: format!("{}:{}", n.file.display(), n.line),
            directive: "include".into(),
            instead: n.message.clone(),
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: directive \"{}\" is not supported: {}",
            self.at, self.directive, self.instead
        )
    }
}

/// The result of an import: the new file's text and the report, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub toml: String,
    pub losses: Vec<Loss>,
}

impl Imported {
    /// The report, one line per loss.
    pub fn report(&self) -> String {
        self.losses.iter().map(|l| format!("{l}\n")).collect()
    }

    /// 0 when everything was carried over, 3 when something was reported.
    pub fn exit_code(&self) -> u8 {
        if self.losses.is_empty() {
            0
        } else {
            3
        }
    }
}

/// Sorts the report into file order (files in the order they were read, then lines): walking
/// a configuration visits included files out of that order.
pub fn sort_losses(losses: &mut [Loss], files: &[std::path::PathBuf]) {
    losses.sort_by_key(|l| {
        let (file, line) = l.at.rsplit_once(':').unwrap_or((&l.at, "0"));
        let index = files
            .iter()
            .position(|f| f.as_os_str() == file)
            .unwrap_or(usize::MAX);
        (index, line.parse::<usize>().unwrap_or(0))
    });
}

/// The error for a configuration with nothing to carry over; the report so far is part of it.
pub fn nothing_to_import(path: &Path, why: &str, losses: &[Loss]) -> crate::ConfigError {
    let mut message = format!("{why}: nothing to import");
    for l in losses {
        message.push_str(&format!("\n{l}"));
    }
    crate::ConfigError {
        file: path.to_path_buf(),
        line: 0,
        col: 0,
        message,
    }
}

/// Exit status for input that cannot be read or parsed.
pub const EXIT_UNREADABLE: u8 = 1;

/// The shared tail of both `import` subcommands: writes the TOML to `out` (stdout without),
/// the report to stderr, and gives the exit status (0 all mapped, 3 with losses, 1 when the
/// input or the output file fails).
pub fn finish_cli(
    tool: &str,
    result: Result<Imported, crate::ConfigError>,
    out: Option<&Path>,
) -> ExitCode {
    let imported = match result {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{tool} import: nothing written");
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("{tool} import: cannot write {}: {e}", path.display());
                return ExitCode::from(EXIT_UNREADABLE);
            }
        }
        None => print!("{}", imported.toml),
    }
    eprint!("{}", imported.report());
    if !imported.losses.is_empty() {
        eprintln!(
            "{tool} import: {} directive(s) not carried over (listed above, and as comments in the output)",
            imported.losses.len()
        );
    }
    ExitCode::from(imported.exit_code())
}

/// A TOML basic string: `"..."` with quotes, backslashes and control characters escaped.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, quoted otherwise (`upstream."10.0.0.1:8080"`).
pub fn toml_key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        s.to_string()
    } else {
        toml_str(s)
    }
}

/// A `# ...` comment line for the generated file (one line, whatever the text holds).
pub fn comment(indent: &str, text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{indent}# {one_line}\n")
}

/// Puts a section's comments (from [`comment`] with a `file:line` first, or [`dropped`]) in
/// file order; comments without a position keep their place at the front.
pub fn sort_comments(notes: &mut [String]) {
    notes.sort_by_cached_key(|n| {
        let rest = n
            .trim_start_matches("# ")
            .trim_start_matches("NOT IMPORTED ");
        let at = rest
            .split([' ', '\n'])
            .next()
            .unwrap_or("")
            .trim_end_matches(':');
        match at.rsplit_once(':') {
            Some((file, line)) if line.parse::<usize>().is_ok() => {
                (file.to_string(), line.parse::<usize>().unwrap_or(0))
            }
            _ => (String::new(), 0),
        }
    });
}

/// The comment that marks a dropped directive in the generated file.
pub fn dropped(loss: &Loss) -> String {
    comment(
        "",
        &format!(
            "NOT IMPORTED {}: {} ({})",
            loss.at, loss.directive, loss.instead
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_and_keys_are_valid_toml() {
        assert_eq!(toml_str("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(toml_key("ProxyServer"), "ProxyServer");
        assert_eq!(toml_key("10.0.0.1:80"), "\"10.0.0.1:80\"");
        assert_eq!(toml_key(""), "\"\"");
        assert_eq!(comment("  ", "a\nb"), "  # a b\n");
        let mut notes = vec![
            "# f.conf:40 error_page 500 /50x.html: x\n".to_string(),
            "# NOT IMPORTED f.conf:38: location (y)\n".to_string(),
            "# no position\n".to_string(),
            "# f.conf:9 user nginx: z\n".to_string(),
        ];
        sort_comments(&mut notes);
        assert!(notes[0].starts_with("# no position"));
        assert!(notes[1].contains(":9 "));
        assert!(notes[2].contains(":38:"));
        assert!(notes[3].contains(":40 "));
    }
}
