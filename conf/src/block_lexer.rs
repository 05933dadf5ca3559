//! The tokens of nginx.conf and keepalived.conf (see the parent module for the two dialects).

use super::Dialect;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
    /// keepalived only: the end of a line.
    Newline,
    Eof,
}

pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    dialect: Dialect,
}

type LexResult = Result<(Tok, usize), (usize, String)>;

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str, dialect: Dialect) -> Self {
        Lexer {
            text,
            pos: 0,
            dialect,
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn is_comment(&self, c: char) -> bool {
        c == '#' || (c == '!' && self.dialect == Dialect::Keepalived)
    }

    fn skip_comment(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.find('\n').unwrap_or(rest.len());
    }

    pub(super) fn next(&mut self) -> LexResult {
        let keepalived = self.dialect == Dialect::Keepalived;
        loop {
            let at = self.pos;
            let Some(c) = self.peek() else {
                return Ok((Tok::Eof, at));
            };
            if c == '\n' && keepalived {
                self.pos += 1;
                return Ok((Tok::Newline, at));
            }
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            if self.is_comment(c) {
                self.skip_comment();
                continue;
            }
            let tok = match c {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ';' if !keepalived => Tok::Semi,
                '"' => return self.quoted('"'),
                '\'' if !keepalived => return self.quoted('\''),
                _ => return Ok((Tok::Word(self.word()), at)),
            };
            self.pos += 1;
            return Ok((tok, at));
        }
    }

    /// An unquoted word up to whitespace, `;` or `{` (nginx, where `${` belongs to a variable
    /// and `}` to the word), or up to whitespace, a brace or a comment (keepalived).
    fn word(&mut self) -> String {
        let keepalived = self.dialect == Dialect::Keepalived;
        let mut out = String::new();
        let mut after_dollar = false;
        while let Some(c) = self.peek() {
            let ends = c.is_whitespace()
                || (keepalived && (c == '{' || c == '}' || self.is_comment(c)))
                || (!keepalived && (c == ';' || (c == '{' && !after_dollar)));
            if ends {
                break;
            }
            self.pos += c.len_utf8();
            after_dollar = c == '$';
            if c == '\\' {
                match self.peek() {
                    // keepalived (parser.c decomment): only \! and \# are escapes.
                    Some(e @ ('!' | '#')) if keepalived => {
                        self.pos += 1;
                        out.push(e);
                        continue;
                    }
                    Some(e) if !keepalived => {
                        self.pos += e.len_utf8();
                        push_escape(&mut out, e);
                        continue;
                    }
                    _ => {}
                }
            }
            out.push(c);
        }
        out
    }

    fn quoted(&mut self, quote: char) -> LexResult {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err((start, format!("unexpected end of file, expecting {quote}")));
            };
            self.pos += c.len_utf8();
            if c == quote {
                break;
            }
            // nginx unescapes quoted text; keepalived keeps it as written (a `\"` inside
            // does not end the string there either).
            if c == '\\' {
                if let Some(e) = self.peek() {
                    self.pos += e.len_utf8();
                    match self.dialect {
                        Dialect::Nginx => push_escape(&mut out, e),
                        Dialect::Keepalived => {
                            out.push(c);
                            out.push(e);
                        }
                    }
                    continue;
                }
            }
            out.push(c);
        }
        // nginx wants a separator after a closing quote ("a"b is an error there).
        if self.dialect == Dialect::Nginx {
            if let Some(c) = self.peek() {
                if !(c.is_whitespace() || c == ';' || c == '{') {
                    return Err((self.pos, format!("unexpected \"{c}\"")));
                }
            }
        }
        Ok((Tok::Word(out), start))
    }
}

/// nginx's escapes: `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other `\x` stays as written.
fn push_escape(out: &mut String, e: char) {
    match e {
        '"' | '\'' | '\\' => out.push(e),
        't' => out.push('\t'),
        'r' => out.push('\r'),
        'n' => out.push('\n'),
        other => {
            out.push('\\');
            out.push(other);
        }
    }
}
