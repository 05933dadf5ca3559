//! `vrrp import keepalived.conf`: keepalived's VRRP configuration carried over to vrrp.toml.
//!
//! The file is read with `conf::block` (includes expanded), walked into [`Section`]s (what
//! vrrp.toml can say, plus comments), and written out. What vrrp cannot do (LVS, BFD, sync
//! groups, e-mail, ...) is reported one line per directive (`file:line: directive "x" is not
//! supported: what happens instead`) and marked with a comment where it would have gone.

mod instance;
mod known;

use std::fmt::Write as _;
use std::path::Path;

use conf::block::{self, Dialect, Directive, Files};
use conf::import::{comment, dropped, toml_key, toml_str, Imported, Loss};
use conf::ConfigError;

/// One TOML table: its header, `key = value` lines in order, and comments above them.
#[derive(Debug, Default)]
pub(crate) struct Section {
    pub header: String,
    pub fields: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Section {
    fn new(header: String) -> Self {
        Section {
            header,
            ..Section::default()
        }
    }

    pub fn set(&mut self, key: &str, value: String) {
        self.fields.retain(|(k, _)| k != key);
        self.fields.push((key.to_string(), value));
    }

    pub fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }
}

/// The report and the comments for the top of the file.
pub(crate) struct Walk<'a> {
    pub losses: &'a mut Vec<Loss>,
    pub top: Vec<String>,
    /// `vrrp_version` from global_defs: the default of every instance.
    pub default_version: Option<u8>,
}

impl Walk<'_> {
    /// Reports `d` and gives the comment marking the place it was dropped.
    pub fn lose(&mut self, d: &Directive, instead: impl Into<String>) -> String {
        let loss = Loss::new(d, instead);
        let c = dropped(&loss);
        if !self.losses.contains(&loss) {
            self.losses.push(loss);
        }
        c
    }

    /// The comment for a directive that is carried over in spirit but has no key of its own.
    pub fn noted(d: &Directive, why: &str) -> String {
        comment("", &format!("{} {}: {why}", d.at(), d.source_text()))
    }

    pub fn other(&mut self, d: &Directive) -> String {
        self.lose(d, known::instead(&d.name))
    }
}

/// Imports the keepalived configuration at `path` (and what it includes, read through `files`).
/// `Err` when the input cannot be read or parsed, or holds no VRRP instance.
pub fn keepalived(path: &Path, files: &dyn Files) -> Result<Imported, ConfigError> {
    let parsed = block::parse_file(path, Dialect::Keepalived, files)?;
    let mut losses: Vec<Loss> = parsed.notes.iter().map(Loss::from_note).collect();
    let top = losses.iter().map(dropped).collect();
    let mut w = Walk {
        losses: &mut losses,
        top,
        default_version: None,
    };
    let mut global = Section::new("global_defs".into());
    // Not in keepalived.conf (keepalived's nearest is vrrp_rt_priority): the master's adverts
    // leave from a SCHED_RR thread, so a busy balancer does not lose the VIPs to late adverts.
    // On in every vrrp.toml this project deploys; the unit grants what it needs.
    global.set("realtime", "true".into());
    global.notes.push(comment(
        "",
        "realtime = true: adverts from a SCHED_RR thread (no false failover on a busy machine)",
    ));
    // global_defs first: vrrp_version there applies to instances written before it too.
    for d in parsed.directives.iter().filter(|d| d.name == "global_defs") {
        global_defs(&mut w, d, &mut global);
    }
    let mut scripts = Vec::new();
    let mut instances = Vec::new();
    for d in &parsed.directives {
        match d.name.as_str() {
            "global_defs" => {}
            "vrrp_script" => scripts.extend(instance::script(&mut w, d)),
            "vrrp_instance" => instances.push(d),
            _ => {
                let n = w.other(d);
                w.top.push(n);
            }
        }
    }
    let script_names: Vec<String> = scripts.iter().map(|(n, _)| n.clone()).collect();
    let instances: Vec<Section> = instances
        .into_iter()
        .filter_map(|d| instance::instance(&mut w, d, &script_names))
        .collect();
    let top = std::mem::take(&mut w.top);
    conf::import::sort_losses(&mut losses, &parsed.files);
    if instances.is_empty() {
        let why = "no vrrp_instance could be imported";
        return Err(conf::import::nothing_to_import(path, why, &losses));
    }
    let sections = std::iter::once(global)
        .chain(scripts.into_iter().map(|(_, s)| s))
        .chain(instances);
    let toml = write_toml(path, top, sections);
    Ok(Imported { toml, losses })
}

/// The vrrp.toml text: a header, the top-level comments, then each table with its comments.
fn write_toml(
    path: &Path,
    mut top: Vec<String>,
    sections: impl Iterator<Item = Section>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# vrrp.toml imported from {} by `vrrp import`.",
        path.display()
    );
    s.push_str("# Lines starting with \"NOT IMPORTED\" mark what vrrp does not do.\n");
    s.push_str("# Check both balancers' files together: vrrp --check --config A --config B\n");
    conf::import::sort_comments(&mut top);
    for n in &top {
        s.push_str(n);
    }
    for mut sec in sections {
        conf::import::sort_comments(&mut sec.notes);
        let _ = writeln!(s, "\n[{}]", sec.header);
        for n in &sec.notes {
            s.push_str(n);
        }
        for (k, v) in &sec.fields {
            let _ = writeln!(s, "{k} = {v}");
        }
    }
    s
}

fn global_defs(w: &mut Walk<'_>, d: &Directive, g: &mut Section) {
    for c in d.children() {
        let arg = c.args.first().map(String::as_str).unwrap_or("");
        match c.name.as_str() {
            "router_id" => g.set("router_id", toml_str(arg)),
            "vrrp_version" => match arg.parse::<u8>() {
                Ok(v @ (2 | 3)) => {
                    w.default_version = Some(v);
                    g.notes
                        .push(Walk::noted(c, "written as version = N in each instance"));
                }
                _ => g.notes.push(w.lose(c, "not 2 or 3; version 2 is used")),
            },
            _ => {
                let n = w.other(c);
                g.notes.push(n);
            }
        }
    }
}

/// `[vrrp_script.NAME]` / `[vrrp_instance.NAME]` headers.
pub(crate) fn header(table: &str, name: &str) -> String {
    format!("{table}.{}", toml_key(name))
}
