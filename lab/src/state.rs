//! What `lab up` created, written before each step so that `lab down` can undo a crashed or
//! half-done `up`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::topology::Topology;

/// Where lab state lives unless told otherwise: on tmpfs, like the namespaces it describes, so a
/// reboot clears both.
pub const DEFAULT_STATE_ROOT: &str = "/run/lab";

/// Names derived from the lab id. Everything the lab creates carries the id, so two labs (a
/// user's and a test's) never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub id: String,
}

impl Names {
    pub fn new(id: &str) -> Result<Names> {
        let ok = !id.is_empty()
            && id.len() <= 20
            && !id.starts_with('-')
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Names { id: id.to_string() })
        } else {
            Err(LabError::BadId(id.to_string()))
        }
    }

    pub fn bridge_ns(&self) -> String {
        format!("{}-bridge", self.id)
    }

    pub fn client_ns(&self) -> String {
        format!("{}-client", self.id)
    }

    /// The ECMP topology's router ("lab-router" for the default id).
    pub fn router_ns(&self) -> String {
        format!("{}-router", self.id)
    }

    pub fn host_ns(&self, host: &str) -> String {
        format!("{}-{host}", self.id)
    }
}

/// What a lab host runs as PID 1 of its PID namespace.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The host's own systemd: services are units, started and stopped with `systemctl`.
    #[default]
    Systemd,
    /// A shell that only holds the namespaces; the lab starts the services itself (for
    /// machines where systemd cannot boot in a namespace).
    None,
}

impl Init {
    pub fn parse(s: &str) -> Option<Init> {
        match s {
            "systemd" => Some(Init::Systemd),
            "none" => Some(Init::None),
            _ => None,
        }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::Systemd => "systemd",
            Init::None => "none",
        })
    }
}

/// The state file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub id: String,
    /// Namespaces created (or about to be), in creation order.
    pub netns: Vec<String>,
    /// Host name -> pid of its keeper process (holder of its mount namespace).
    pub keepers: BTreeMap<String, i32>,
    pub client_address: Option<Ipv4Addr>,
    /// The hosts' init (state files written before there was a choice had none: no systemd).
    #[serde(default = "no_init")]
    pub init: Init,
    /// cgroup directories created for systemd hosts (or about to be), so `down` removes them
    /// even after a crash.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The network's shape (state files written before there was a choice: flat).
    #[serde(default)]
    pub topology: Topology,
    /// Pid of the ECMP router's keeper (holder of its mount and PID namespaces).
    #[serde(default)]
    pub router_keeper: Option<i32>,
    /// Set when `up` finished.
    pub complete: bool,
}

fn no_init() -> Init {
    Init::None
}

/// The lab's state directory: state file, a copy of the inventory, the lab SSH key, the
/// hosts' overlay upper directories.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub dir: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path, names: &Names) -> StateDir {
        StateDir {
            dir: root.join(&names.id),
        }
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.toml")
    }

    /// The inventory the lab was started with (copied, so later commands need no path).
    pub fn inventory_file(&self) -> PathBuf {
        self.dir.join("lab.toml")
    }

    /// The lab's SSH private key (public key next to it with `.pub`).
    pub fn ssh_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// known_hosts with every lab host's own host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// A host's overlay upper/work directories live under here.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join("hosts").join(host)
    }

    /// The ECMP router's overlay upper/work directories.
    pub fn router_dir(&self) -> PathBuf {
        self.dir.join("router")
    }

    pub fn exists(&self) -> bool {
        self.state_file().exists()
    }

    pub fn load(&self) -> Result<Option<State>> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io(format!("read {}", path.display()), e)),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::Other(format!("corrupt state file {}: {e}", path.display())))
    }

    /// Writes atomically (temp file + rename), so a crash never leaves half a state file.
    pub fn save(&self, state: &State) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| LabError::io(format!("create {}", self.dir.display()), e))?;
        let text = toml::to_string(state)
            .map_err(|e| LabError::Other(format!("cannot serialise lab state: {e}")))?;
        let tmp = self.dir.join("state.toml.tmp");
        std::fs::write(&tmp, text)
            .map_err(|e| LabError::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.state_file())
            .map_err(|e| LabError::io(format!("rename {}", tmp.display()), e))
    }

    /// Removes the whole state directory.
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LabError::io(format!("remove {}", self.dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(Names::new("lab").is_ok());
        assert!(Names::new("e2e-1234").is_ok());
        assert!(Names::new("").is_err());
        assert!(Names::new("-x").is_err());
        assert!(Names::new("a/b").is_err());
        assert!(Names::new("UPPER").is_err());
        assert!(Names::new("abcdefghijklmnopqrstu").is_err());
        let n = Names::new("lab").unwrap();
        assert_eq!(n.bridge_ns(), "lab-bridge");
        assert_eq!(n.client_ns(), "lab-client");
        assert_eq!(n.host_ns("server1"), "lab-server1");
        assert_eq!(n.router_ns(), "lab-router");
    }

    #[test]
    fn init_names_and_old_state_files() {
        assert_eq!(Init::parse("systemd"), Some(Init::Systemd));
        assert_eq!(Init::parse("none"), Some(Init::None));
        assert_eq!(Init::parse("sysv"), None);
        assert_eq!(Init::default().to_string(), "systemd");
        let old: State =
            toml::from_str("id = \"x\"\nnetns = []\ncomplete = true\n[keepers]\n").unwrap();
        assert_eq!(old.init, Init::None);
        assert!(old.cgroups.is_empty());
        assert_eq!(old.topology, Topology::Flat);
        assert_eq!(old.router_keeper, None);
    }

    #[test]
    fn state_round_trips() {
        let root = std::env::temp_dir().join(format!("lab-state-test-{}", std::process::id()));
        let names = Names::new("t").unwrap();
        let dir = StateDir::new(&root, &names);
        assert_eq!(dir.load().unwrap(), None);
        let mut st = State {
            id: "t".into(),
            netns: vec!["t-bridge".into()],
            client_address: Some(Ipv4Addr::new(10, 0, 0, 10)),
            ..State::default()
        };
        st.keepers.insert("server1".into(), 42);
        st.cgroups
            .push(PathBuf::from("/sys/fs/cgroup/systemd/lab-t/server1"));
        dir.save(&st).unwrap();
        assert_eq!(dir.load().unwrap(), Some(st));
        dir.remove().unwrap();
        dir.remove().unwrap();
        assert!(!root.join("t").exists());
        let _ = std::fs::remove_dir(&root);
    }
}
