//! `conf`: the small things every daemon of this workspace does the same way.
//!
//! - [`ConfigError`] / [`ConfigErrors`]: one problem in a config file with its 1-based line and
//!   column, and every problem of one file in file order, printed as `file:line:col: message`
//!   the way `nginx -t` and compilers do, so editors can jump to them.
//! - [`Source`]: a config file's text with the byte-offset -> line:col mapping. Parsers (TOML
//!   through serde/toml_edit spans today, nginx/keepalived syntax for the importers) report byte
//!   ranges; this is the one place that turns them into positions.
//! - [`Collector`]: gathers errors while validation goes on, so a user sees all of them at once
//!   instead of fixing one per run.
//! - [`init_tracing`]: the log format of the daemons (stderr, `RUST_LOG` filter, colour only on a
//!   terminal so journald and log files get plain text).

pub mod block;
pub mod import;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file. `line` and `col` are 1-based; both are 0 when the problem has
/// no position (the file cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ConfigError {
    /// The error for a file that cannot be read at all.
    pub fn unreadable(path: &Path, err: &std::io::Error) -> Self {
        ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read config file: {err}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            let (file, line, col) = (self.file.display(), self.line, self.col);
            write!(f, "{file}:{line}:{col}: {}", self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config file, in file order, one per line when printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A config file's text and where its lines start.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            path,
            text,
            line_starts,
        }
    }

    pub fn path(&self) -> &'a Path {
        self.path
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based line and column (in characters, as editors count) of a byte offset. Offsets past
    /// the end or inside a UTF-8 sequence are clamped, never a panic.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = self.text[start..offset].chars().count() + 1;
        (line, col)
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.position(span.start);
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }
}

/// Collects errors while validation carries on.
#[derive(Debug)]
pub struct Collector<'a> {
    pub source: Source<'a>,
    errors: Vec<ConfigError>,
}

impl<'a> Collector<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Collector {
            source: Source::new(path, text),
            errors: Vec::new(),
        }
    }

    /// Records a problem at the start of `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.source.error(span, message);
        self.errors.push(e);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// How many errors so far: a validator compares counts to tell whether one item was valid.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Drops errors that another one already explains (e.g. "missing key" after the key's
    /// own line was blanked out for being malformed).
    pub fn retain(&mut self, keep: impl FnMut(&ConfigError) -> bool) {
        self.errors.retain(keep);
    }

    /// `value` if nothing was recorded, else every error in file order (validation visits
    /// sections in an order of its own; users read files top to bottom).
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        self.errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(self.errors))
    }

    /// The errors so far, for a caller that cannot build a value.
    pub fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(self.errors)
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise; colour codes only for a terminal,
/// so journald and redirected files get plain text.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n\nlast";
        let src = Source::new(Path::new("f.toml"), text);
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(4), (1, 5));
        assert_eq!(src.position(6), (2, 1));
        // "é" is two bytes: the '=' after it is the 4th character of line 2.
        assert_eq!(src.position(text.find("= \"").unwrap()), (2, 4));
        assert_eq!(src.position(text.find("last").unwrap()), (4, 1));
        // Past the end and inside a multi-byte character: clamped, no panic.
        assert_eq!(src.position(10_000), (4, 5));
        assert_eq!(src.position(8), (2, 2));
        // A trailing newline opens an empty last line.
        assert_eq!(Source::new(Path::new("f"), "ab\n").position(1000), (2, 1));
    }

    #[test]
    fn errors_print_like_nginx_t_in_file_order() {
        let text = "x = 1\ny = 2\n";
        let mut c = Collector::new(Path::new("/etc/p.toml"), text);
        c.error(6..7, "second");
        c.error(0..1, "first");
        let errs = c.finish(()).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "/etc/p.toml:1:1: first\n/etc/p.toml:2:1: second"
        );
        let e = ConfigError::unreadable(
            Path::new("/nope"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            e.to_string(),
            "/nope: cannot read config file: entity not found"
        );
    }

    #[test]
    fn no_errors_gives_the_value() {
        let c = Collector::new(Path::new("f"), "");
        assert_eq!(c.finish(7), Ok(7));
    }
}
