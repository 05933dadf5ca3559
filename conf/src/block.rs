//! One reader for the `name args { ... }` grammar that nginx.conf and keepalived.conf share.
//!
//! Both files are lists of directives: a name, words, and either an end (`;` in nginx, the end of
//! the line in keepalived) or a `{ ... }` block of more directives. What differs is small and
//! lives in [`Dialect`]:
//! - nginx ends a directive with `;`; `#` starts a comment only where a word could start; `}`
//!   inside a word is part of it and `${name}` inside a word is a variable, not a block
//!   (ngx_conf_file.c); `'...'` and `"..."` quote, `\` escapes.
//! - keepalived ends a directive at the end of the line, a `{` on the next line still opens its
//!   block; `!` and `#` start comments anywhere outside quotes (`\!` and `\#` are literal),
//!   quoted text is kept as written; `{` and `}` are always tokens (keepalived's parser.c splits
//!   them off words).
//!
//! `include PATTERN` is expanded where it stands (glob, sorted like glob(3)). A relative pattern
//! is taken from the directory of the main file in nginx (nginx resolves includes against its
//! configuration prefix, the main file's directory, whichever file includes them) and from the
//! including file's directory in keepalived. An include that matches no readable file is a
//! [`Note`], not an error: importing can go on and say what was not read.
//!
//! `$variables` stay text. The first syntax error stops the parse and names file:line:col, the
//! way `nginx -t` does. Any input gives `Ok` or `Err`, never a panic; nesting, include depth and
//! total size are bounded.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{ConfigError, Source};

#[path = "block_lexer.rs"]
mod lexer;
use lexer::{Lexer, Tok};

/// Which of the two languages a file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Nginx,
    Keepalived,
}

/// One directive: `name args;` or `name args { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    /// The file the directive is written in (an included file for included directives).
    pub file: Arc<Path>,
    pub line: usize,
    pub col: usize,
}

impl Directive {
    /// `file:line`, the prefix of every import report line.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The directives of the block (none for a directive without one).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// The directive as written, on one line, block elided: `proxy_pass http://x;`.
    pub fn source_text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ';') {
                s.push_str(&format!("{a:?}"));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// Something read past without failing: an include whose files could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: Arc<Path>,
    pub line: usize,
    pub message: String,
}

/// A whole configuration with its includes expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub directives: Vec<Directive>,
    pub notes: Vec<Note>,
    /// Every file read, the main file first.
    pub files: Vec<PathBuf>,
}

/// Where included files come from: the file system, or nothing (fuzzing, tests).
pub trait Files {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The paths a glob pattern matches, sorted.
    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String>;
}

/// The real file system. With `confine`, files outside that directory count as missing, so a
/// test corpus gives the same result on every machine.
#[derive(Debug, Clone, Default)]
pub struct FsFiles {
    pub confine: Option<PathBuf>,
}

impl FsFiles {
    fn allowed(&self, path: &Path) -> bool {
        match &self.confine {
            Some(dir) => path.starts_with(dir),
            None => true,
        }
    }
}

impl Files for FsFiles {
    fn read(&self, path: &Path) -> io::Result<String> {
        if !self.allowed(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let bytes = std::fs::read(path)?;
        // Old configs carry Latin-1 comments; a lossy read keeps every directive readable.
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
        let text = pattern.to_string_lossy();
        let paths = glob::glob(&text).map_err(|e| format!("bad include pattern: {e}"))?;
        let mut found: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file() && self.allowed(p))
            .collect();
        found.sort();
        Ok(found)
    }
}

/// No files at all: every include is a [`Note`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl Files for NoFiles {
    fn read(&self, _: &Path) -> io::Result<String> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn glob(&self, _: &Path) -> Result<Vec<PathBuf>, String> {
        Ok(Vec::new())
    }
}

/// Blocks nested deeper than this are refused (dropping a deeply nested tree recurses).
pub const MAX_NESTING: usize = 64;
/// Includes nested deeper than this are refused (a file that includes itself).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// At most this much text is read over all files.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// Reads `path` and everything it includes.
pub fn parse_file(path: &Path, dialect: Dialect, files: &dyn Files) -> Result<Parsed, ConfigError> {
    let text = files
        .read(path)
        .map_err(|e| ConfigError::unreadable(path, &e))?;
    parse_str(&text, path, dialect, files)
}

/// Parses `text` as the content of `path`, reading what it includes through `files`.
pub fn parse_str(
    text: &str,
    path: &Path,
    dialect: Dialect,
    files: &dyn Files,
) -> Result<Parsed, ConfigError> {
    let main_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Reader {
        dialect,
        files,
        main_dir,
        notes: Vec::new(),
        read: vec![path.to_path_buf()],
        bytes: text.len(),
    };
    let directives = cx.parse_text(text, path, 0)?;
    Ok(Parsed {
        directives,
        notes: cx.notes,
        files: cx.read,
    })
}

struct Reader<'f> {
    dialect: Dialect,
    files: &'f dyn Files,
    main_dir: PathBuf,
    notes: Vec<Note>,
    read: Vec<PathBuf>,
    bytes: usize,
}

/// A directive being read: its name, words so far, and where it starts.
struct Open {
    name: String,
    args: Vec<String>,
    offset: usize,
}

/// One file being read: its positions, the open blocks and the directive in progress.
struct FileState<'s> {
    source: Source<'s>,
    file: Arc<Path>,
    /// How deep in includes this file is.
    depth: usize,
    stack: Vec<Frame>,
    cur: Option<Open>,
    /// keepalived: a directive ended by a newline whose block may open on a later line.
    pending: Option<Open>,
}

impl FileState<'_> {
    fn err(&self, offset: usize, message: String) -> ConfigError {
        self.source.error(offset..offset, message)
    }

    /// `{`: the directive in progress (or, in keepalived, the one on the line before) opens it.
    fn open(&mut self, at: usize) -> Result<(), ConfigError> {
        let Some(head) = self.cur.take().or_else(|| self.pending.take()) else {
            return Err(self.err(at, "unexpected \"{\"".into()));
        };
        if self.stack.len() > MAX_NESTING {
            return Err(self.err(at, format!("blocks nested deeper than {MAX_NESTING}")));
        }
        self.stack.push(Frame {
            head: Some(head),
            children: Vec::new(),
        });
        Ok(())
    }
}

/// A block being read: the directive that opened it and its children so far.
struct Frame {
    head: Option<Open>,
    children: Vec<Directive>,
}

impl Reader<'_> {
    fn parse_text(
        &mut self,
        text: &str,
        path: &Path,
        depth: usize,
    ) -> Result<Vec<Directive>, ConfigError> {
        let mut st = FileState {
            source: Source::new(path, text),
            file: Arc::from(path),
            depth,
            stack: vec![Frame {
                head: None,
                children: Vec::new(),
            }],
            cur: None,
            pending: None,
        };
        let mut lexer = Lexer::new(text, self.dialect);
        loop {
            let (tok, at) = lexer.next().map_err(|(at, m)| st.err(at, m))?;
            if !matches!(tok, Tok::Open | Tok::Newline) {
                if let Some(p) = st.pending.take() {
                    self.finish(p, &mut st)?;
                }
            }
            match tok {
                Tok::Word(w) => match &mut st.cur {
                    Some(open) => open.args.push(w),
                    None => {
                        st.cur = Some(Open {
                            name: w,
                            args: Vec::new(),
                            offset: at,
                        })
                    }
                },
                Tok::Newline => {
                    if let Some(open) = st.cur.take() {
                        if let Some(p) = st.pending.replace(open) {
                            self.finish(p, &mut st)?;
                        }
                    }
                }
                Tok::Semi => match st.cur.take() {
                    Some(open) => self.finish(open, &mut st)?,
                    None => return Err(st.err(at, "unexpected \";\"".into())),
                },
                Tok::Open => st.open(at)?,
                Tok::Close => self.close(&mut st, at)?,
                Tok::Eof => return self.eof(st, at),
            }
        }
    }

    /// `}`: keepalived ends the directive on its line first; nginx wants a `;` before it.
    fn close(&mut self, st: &mut FileState<'_>, at: usize) -> Result<(), ConfigError> {
        if let Some(open) = st.cur.take() {
            if self.dialect == Dialect::Nginx {
                return Err(st.err(at, "unexpected \"}\"".into()));
            }
            self.finish(open, st)?;
        }
        if st.stack.len() == 1 {
            return Err(st.err(at, "unexpected \"}\"".into()));
        }
        close_block(&mut st.stack, &st.source, &st.file);
        Ok(())
    }

    fn eof(&mut self, mut st: FileState<'_>, at: usize) -> Result<Vec<Directive>, ConfigError> {
        if let Some(open) = st.cur.take() {
            if self.dialect == Dialect::Nginx {
                let m = "unexpected end of file, expecting \";\" or \"}\"";
                return Err(st.err(at, m.into()));
            }
            self.finish(open, &mut st)?;
        }
        if st.stack.len() > 1 {
            return Err(st.err(at, "unexpected end of file, expecting \"}\"".into()));
        }
        Ok(st.stack.pop().map(|f| f.children).unwrap_or_default())
    }

    /// Ends a directive without a block: an include is expanded, anything else is kept.
    fn finish(&mut self, open: Open, st: &mut FileState<'_>) -> Result<(), ConfigError> {
        let d = directive(open, None, &st.source, &st.file);
        let expanded = if d.name == "include" {
            self.include(&d, st.depth)?
        } else {
            vec![d]
        };
        if let Some(top) = st.stack.last_mut() {
            top.children.extend(expanded);
        }
        Ok(())
    }

    fn include(&mut self, d: &Directive, depth: usize) -> Result<Vec<Directive>, ConfigError> {
        let here = |message: String| ConfigError {
            file: d.file.to_path_buf(),
            line: d.line,
            col: d.col,
            message,
        };
        let [pattern] = d.args.as_slice() else {
            return Err(here(
                "invalid number of arguments in \"include\" directive".into(),
            ));
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(here(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} (a file including itself?)"
            )));
        }
        let base = match self.dialect {
            Dialect::Nginx => self.main_dir.clone(),
            Dialect::Keepalived => d.file.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let full = base.join(pattern);
        let paths = if pattern.contains(['*', '?', '[']) {
            self.files.glob(&full).map_err(here)?
        } else {
            vec![full]
        };
        let mut out = Vec::new();
        for path in paths {
            let text = match self.files.read(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.notes.push(Note {
                        file: d.file.clone(),
                        line: d.line,
                        message: format!(
                            "include \"{}\": cannot read it ({e}): its directives are not imported",
                            path.display()
                        ),
                    });
                    continue;
                }
            };
            self.bytes = self.bytes.saturating_add(text.len());
            if self.bytes > MAX_TOTAL_BYTES {
                return Err(here(format!(
                    "included files exceed {} MiB in total",
                    MAX_TOTAL_BYTES >> 20
                )));
            }
            self.read.push(path.clone());
            out.extend(self.parse_text(&text, &path, depth + 1)?);
        }
        Ok(out)
    }
}

fn directive(
    open: Open,
    block: Option<Vec<Directive>>,
    source: &Source<'_>,
    file: &Arc<Path>,
) -> Directive {
    let (line, col) = source.position(open.offset);
    Directive {
        name: open.name,
        args: open.args,
        block,
        file: file.clone(),
        line,
        col,
    }
}

/// Pops the innermost block into its parent (the caller checked there is a parent).
fn close_block(stack: &mut Vec<Frame>, source: &Source<'_>, file: &Arc<Path>) {
    if let Some(Frame {
        head: Some(head),
        children,
    }) = stack.pop()
    {
        let d = directive(head, Some(children), source, file);
        if let Some(parent) = stack.last_mut() {
            parent.children.push(d);
        }
    }
}

#[cfg(test)]
#[path = "block_tests.rs"]
mod tests;
