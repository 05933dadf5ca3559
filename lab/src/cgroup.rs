//! The cgroups a systemd lab host boots in. systemd as PID 1 wants a cgroup tree of its own to
//! manage; each host gets one directory per hierarchy the machine mounts
//! (`lab-<id>/<host>`), its keeper is moved there before it unshares its cgroup namespace, so
//! the host's systemd sees that directory as its root and can never touch the machine's other
//! cgroups. `lab down` removes the directories again, deepest first (the host's systemd leaves
//! its slices and scopes behind when it powers off).

use std::path::{Path, PathBuf};

use crate::error::{LabError, Result};

/// The cgroup hierarchies systemd needs, as mounted on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 with a named `systemd` hierarchy plus cgroup2 at `unified` (Debian's
    /// "hybrid" default on cgroup-v1 machines).
    Hybrid { named: PathBuf, unified: PathBuf },
    /// cgroup2 only, mounted at the root.
    Unified { root: PathBuf },
}

impl Layout {
    /// What this machine mounts under `/sys/fs/cgroup`, or why systemd cannot boot on it.
    pub fn detect() -> Result<Layout, String> {
        Layout::detect_in(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Pure part of [`Layout::detect`]: reads a mountinfo text.
    pub fn detect_in(mountinfo: &str) -> Result<Layout, String> {
        // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER".
        let mounts: Vec<(&str, &str, &str)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let point = left.split_whitespace().nth(4)?;
                let mut r = right.split_whitespace();
                let fstype = r.next()?;
                let superopts = r.nth(1).unwrap_or("");
                Some((point, fstype, superopts))
            })
            .collect();
        let find = |point: &str, fstype: &str| {
            mounts
                .iter()
                .find(|(p, t, _)| *p == point && *t == fstype)
                .map(|(_, _, o)| *o)
        };
        if find("/sys/fs/cgroup", "cgroup2").is_some() {
            return Ok(Layout::Unified {
                root: PathBuf::from("/sys/fs/cgroup"),
            });
        }
        let named = find("/sys/fs/cgroup/systemd", "cgroup")
            .is_some_and(|o| o.split(',').any(|x| x == "name=systemd"));
        let unified = find("/sys/fs/cgroup/unified", "cgroup2").is_some();
        if named && unified {
            Ok(Layout::Hybrid {
                named: PathBuf::from("/sys/fs/cgroup/systemd"),
                unified: PathBuf::from("/sys/fs/cgroup/unified"),
            })
        } else {
            Err(
                "neither cgroup2 at /sys/fs/cgroup nor a named `systemd` cgroup v1 hierarchy \
                 at /sys/fs/cgroup/systemd with cgroup2 at /sys/fs/cgroup/unified is mounted"
                    .into(),
            )
        }
    }

    /// The hierarchy roots a host's cgroup is created in.
    pub fn roots(&self) -> Vec<&Path> {
        match self {
            Layout::Hybrid { named, unified } => vec![named, unified],
            Layout::Unified { root } => vec![root],
        }
    }

    /// The cgroup directories of `host` in lab `id`, one per hierarchy.
    pub fn host_dirs(&self, id: &str, host: &str) -> Vec<PathBuf> {
        self.roots()
            .into_iter()
            .map(|r| r.join(format!("lab-{id}")).join(host))
            .collect()
    }

    /// Whether the host's systemd gets the hybrid view (a tmpfs with `systemd` and `unified`
    /// below it) or cgroup2 directly at /sys/fs/cgroup.
    pub fn is_hybrid(&self) -> bool {
        matches!(self, Layout::Hybrid { .. })
    }
}

/// Creates `dir` (and its `lab-<id>` parent).
pub fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LabError::io(format!("create cgroup {}", dir.display()), e))
}

/// Removes `dir` and every cgroup below it, deepest first, then its parent if that is empty
/// (the `lab-<id>` directory shared by the lab's hosts). A cgroup that still holds processes
/// cannot be removed: that is reported.
pub fn remove(dir: &Path) -> Result<()> {
    remove_tree(dir)?;
    if let Some(parent) = dir.parent() {
        // Another host of the same lab may still use it: then this fails, which is fine.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// Removes the cgroups below `dir` but keeps `dir` (a host that boots again reuses it).
pub fn clear_children(dir: &Path) -> Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    // A cgroup directory is removed with rmdir although it lists control files: they are not
    // real files. Processes of a host whose PID 1 just died leave its cgroups a moment after
    // they were killed: busy is retried for a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Err(e)
                if e.raw_os_error() == Some(nix::libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other,
        }
    }
    .map_err(|e| {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        LabError::io(
            format!(
                "remove cgroup {} (processes still in it: {})",
                dir.display(),
                procs.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
44 35 0:39 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
45 35 0:40 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw
46 35 0:41 / /sys/fs/cgroup/cpu rw,relatime shared:20 - cgroup cgroup rw,cpu
";

    #[test]
    fn detects_hybrid_unified_and_neither() {
        let h = Layout::detect_in(HYBRID).unwrap();
        assert!(h.is_hybrid());
        assert_eq!(
            h.host_dirs("e2e1", "server1"),
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd/lab-e2e1/server1"),
                PathBuf::from("/sys/fs/cgroup/unified/lab-e2e1/server1"),
            ]
        );
        let u = Layout::detect_in(
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        assert_eq!(
            u.host_dirs("lab", "s"),
            vec![PathBuf::from("/sys/fs/cgroup/lab-lab/s")]
        );
        // v1 controllers without the named hierarchy: systemd cannot be given a tree.
        let only_cpu = HYBRID
            .lines()
            .filter(|l| !l.contains("name=systemd"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(Layout::detect_in(&only_cpu)
            .unwrap_err()
            .contains("systemd"));
        assert!(Layout::detect_in("").is_err());
    }

    #[test]
    fn remove_takes_the_tree_deepest_first() {
        // Plain directories behave like cgroups for rmdir order.
        let root = std::env::temp_dir().join(format!("lab-cg-test-{}", std::process::id()));
        let host = root.join("lab-x").join("h");
        std::fs::create_dir_all(host.join("system.slice/proxy.service")).unwrap();
        std::fs::create_dir_all(host.join("init.scope")).unwrap();
        clear_children(&host).unwrap();
        assert!(host.exists() && subdirs(&host).is_empty());
        std::fs::create_dir_all(host.join("user.slice")).unwrap();
        remove(&host).unwrap();
        assert!(!root.join("lab-x").exists());
        remove(&host).unwrap();
        std::fs::remove_dir(&root).unwrap();
    }
}
