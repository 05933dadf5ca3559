//! Shared pieces of the end-to-end tests in `tests/`: a lab with its own id and state root that
//! is taken down in Drop even when a test fails, and probes of what it left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// target/<profile>/, where cargo puts the workspace's binaries (the test executable lives in
/// target/<profile>/deps/).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

pub fn require_bins() -> PathBuf {
    let dir = bin_dir();
    for b in ["lab", "proxy", "vrrp"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the binaries first with `cargo build --bins` (./run test does)",
            dir.join(b).display()
        );
    }
    dir
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, veth, mounts): run them as root"
    );
}

pub fn inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab.toml")
}

/// A lab with a unique id and state root, removed on drop even when the test fails.
pub struct TestLab {
    pub id: String,
    pub root: PathBuf,
}

impl TestLab {
    pub fn new(tag: &str) -> TestLab {
        require_root();
        require_bins();
        let id = format!("e2e{}{tag}", std::process::id());
        // Not under /tmp: the hosts overlay /tmp, and overlayfs refuses an upper directory
        // inside its lower one.
        let root = PathBuf::from(format!("/run/lab-e2e-{id}"));
        TestLab { id, root }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin_dir().join("lab"));
        c.arg("--id")
            .arg(&self.id)
            .arg("--state-root")
            .arg(&self.root);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run lab");
        eprintln!(
            "$ lab {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("{}-", self.id);
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live (non-zombie) processes in the lab's namespaces.
    pub fn processes(&self) -> Vec<i32> {
        let keys: Vec<(u64, u64)> = self
            .namespaces()
            .iter()
            .filter_map(|n| ns_key(&Path::new("/run/netns").join(n)))
            .collect();
        std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|pid| {
                        ns_key(Path::new(&format!("/proc/{pid}/ns/net")))
                            .is_some_and(|k| keys.contains(&k))
                    })
                    .filter(|pid| alive(*pid))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names (comm) of the live processes in the lab's namespaces.
    pub fn process_names(&self) -> Vec<String> {
        self.processes()
            .into_iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .map(|c| c.trim().to_string())
            .collect()
    }

    /// The lab's cgroup directories (`lab-<id>` under every mounted hierarchy).
    pub fn cgroups(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join(format!("lab-{}", self.id)))
                    .filter(|p| p.exists())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn assert_gone(&self, pids_before: &[i32]) {
        assert!(
            self.cgroups().is_empty(),
            "cgroups left: {:?}",
            self.cgroups()
        );
        assert!(
            self.namespaces().is_empty(),
            "namespaces left: {:?}",
            self.namespaces()
        );
        let alive: Vec<(i32, String)> = pids_before
            .iter()
            .copied()
            .filter(|p| alive(*p))
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                (p, String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        assert!(alive.is_empty(), "processes left: {alive:?}");
        assert!(
            !self.root.join(&self.id).exists(),
            "state dir left: {}",
            self.root.join(&self.id).display()
        );
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.cmd().arg("down").stdout(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Addresses and routes of the root namespace.
pub fn root_namespace_view() -> String {
    let run = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let view = format!("{}{}", run(&["-4", "-o", "addr"]), run(&["-4", "route"]));
    assert!(
        !view.contains("172.16.249."),
        "lab address in the root namespace: {view}"
    );
    view
}

pub fn ns_key(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|zombie| !zombie)
}
