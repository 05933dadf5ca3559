//! A host's plan: steps made of idempotent actions, built purely from the inventory and the
//! host's OS family (no I/O), so each family's plan can be golden-tested. The executor
//! (`crate::exec`) checks each action on the host and applies only what differs.

use std::fmt::Write as _;

use crate::check::Check;
use crate::os::Family;

/// One idempotent action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `path` must hold exactly `content` with `mode`. A new version is uploaded next to it,
    /// validated with `validate` (where `{}` is the new file's path) if given, then renamed
    /// over the old one, so a bad file never replaces a good one.
    File {
        path: String,
        content: String,
        mode: u32,
        validate: Option<String>,
        /// Keys whose values are never shown (on the host's side either): in the rendered
        /// plan and in dry-run diffs, a line holding one shows `KEY = ********` from the key on.
        secrets: Vec<String>,
    },
    /// The local binary `name` (from the build directory) must be at `path`; compared by
    /// SHA-256, uploaded only when it differs.
    Binary {
        name: String,
        path: String,
        mode: u32,
    },
    /// `check` holding means nothing to do; otherwise `apply` runs (and `check` must then
    /// hold). Only the check runs in --dry-run, and a [`Check`] can only read.
    Ensure {
        what: String,
        check: Check,
        apply: String,
    },
    /// Runs only if an earlier action of the same step changed something (a handler:
    /// daemon-reload, restart).
    OnChange { command: String },
    /// Must succeed; never changes anything (health and VIP checks). Skipped in --dry-run.
    Assert { what: String, command: String },
    /// The static address, changed under a commit-confirm guard.
    Address(AddressChange),
}

/// The static address: the configuration file, then `apply` under a commit-confirm guard:
/// unless the tool reconnects and confirms within `confirm_secs`, the host restores the old
/// file and applies it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressChange {
    pub path: String,
    pub content: String,
    pub mode: u32,
    pub apply: String,
    /// Holds when the live address is already configured.
    pub live_check: Check,
    pub confirm_secs: u32,
    /// Another file the change edits (backed up and restored with the first).
    pub prepare: Option<Prepare>,
}

/// An edit of a second file that belongs to an address change (e.g. moving the interface's
/// stanza out of Debian's /etc/network/interfaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub file: String,
    /// Holds when no edit is needed.
    pub check: Check,
    /// Runs after the new file is installed, before the apply.
    pub command: String,
}

/// A named group of actions; handlers (`OnChange`) react to the actions before them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub actions: Vec<Action>,
    /// Balancer deployment: runs during this host's turn (one balancer at a time, backup
    /// first).
    pub serial: bool,
}

impl Step {
    pub fn new(name: &str) -> Step {
        Step {
            name: name.into(),
            actions: Vec::new(),
            serial: false,
        }
    }

    pub fn file(mut self, path: &str, content: String, mode: u32) -> Step {
        self.actions.push(Action::File {
            path: path.into(),
            content,
            mode,
            validate: None,
            secrets: Vec::new(),
        });
        self
    }

    pub fn validated_file(mut self, path: &str, content: String, mode: u32, check: &str) -> Step {
        self.actions.push(Action::File {
            path: path.into(),
            content,
            mode,
            validate: Some(check.into()),
            secrets: Vec::new(),
        });
        self
    }

    /// Marks the value of `key` as never to be shown in the last file action's content.
    pub fn secret(mut self, key: &str) -> Step {
        if let Some(Action::File { secrets, .. }) = self.actions.last_mut() {
            secrets.push(key.to_string());
        }
        self
    }

    pub fn ensure(mut self, what: &str, check: Check, apply: &str) -> Step {
        self.actions.push(Action::Ensure {
            what: what.into(),
            check,
            apply: apply.into(),
        });
        self
    }

    pub fn on_change(mut self, command: &str) -> Step {
        self.actions.push(Action::OnChange {
            command: command.into(),
        });
        self
    }

    pub fn assert(mut self, what: &str, command: &str) -> Step {
        self.actions.push(Action::Assert {
            what: what.into(),
            command: command.into(),
        });
        self
    }

    pub fn push(mut self, a: Action) -> Step {
        self.actions.push(a);
        self
    }
}

/// Everything one host gets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub host: String,
    pub address: String,
    pub family: Family,
    /// The systemd version the units are rendered for.
    pub systemd: u32,
    pub steps: Vec<Step>,
}

impl Plan {
    /// Makes every address change wait `secs` for its confirmation.
    pub fn set_confirm_secs(&mut self, secs: u32) {
        for step in &mut self.steps {
            for a in &mut step.actions {
                if let Action::Address(change) = a {
                    change.confirm_secs = secs;
                }
            }
        }
    }

    /// The plan as text: every command and every file's full content. This is what the golden
    /// tests compare.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# plan for {} ({}) on {} with systemd {}",
            self.host, self.address, self.family, self.systemd
        );
        for step in &self.steps {
            let _ = writeln!(
                s,
                "\n== step {}{}",
                step.name,
                if step.serial {
                    " (serial: one balancer at a time)"
                } else {
                    ""
                }
            );
            for a in &step.actions {
                render_action(&mut s, a);
            }
        }
        s
    }
}

/// What secrets are shown as.
pub const MASK: &str = "********";

/// `text` with each line that holds one of the secret `keys` cut after the key and ended with
/// ` = ********`: the value is not shown, whatever it is (the host's old one included).
pub fn mask(text: &str, keys: &[String]) -> String {
    if keys.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let hit = keys
            .iter()
            .filter(|k| !k.is_empty())
            .find_map(|k| line.find(k.as_str()).map(|i| i + k.len()));
        match hit {
            Some(end) => {
                out.push_str(line.get(..end).unwrap_or(line));
                out.push_str(" = ");
                out.push_str(MASK);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

fn render_action(s: &mut String, a: &Action) {
    match a {
        Action::File {
            path,
            content,
            mode,
            validate,
            secrets,
        } => {
            let _ = writeln!(s, "file {path} mode {mode:04o}");
            if let Some(v) = validate {
                let _ = writeln!(s, "  validate: {v}");
            }
            for line in mask(content, secrets).lines() {
                let _ = writeln!(s, "  | {line}");
            }
        }
        Action::Binary { name, path, mode } => {
            let _ = writeln!(
                s,
                "binary {name} -> {path} mode {mode:04o} (uploaded when sha256 differs)"
            );
        }
        Action::Ensure { what, check, apply } => {
            let _ = writeln!(
                s,
                "ensure {what}\n  check: {}\n  apply: {apply}",
                check.command()
            );
        }
        Action::OnChange { command } => {
            let _ = writeln!(s, "on change: {command}");
        }
        Action::Assert { what, command } => {
            let _ = writeln!(s, "assert {what}: {command}");
        }
        Action::Address(AddressChange {
            path,
            content,
            mode,
            apply,
            live_check,
            confirm_secs,
            prepare,
        }) => {
            let _ = writeln!(
                s,
                "address file {path} mode {mode:04o} (applied with `{apply}`, confirmed by reconnecting within {confirm_secs}s, else rolled back)\n  live check: {}",
                live_check.command()
            );
            if let Some(p) = prepare {
                let _ = writeln!(
                    s,
                    "  also edits {} (rolled back with it)\n    check: {}\n    edit: {}",
                    p.file,
                    p.check.command(),
                    p.command
                );
            }
            for line in content.lines() {
                let _ = writeln!(s, "  | {line}");
            }
        }
    }
}
