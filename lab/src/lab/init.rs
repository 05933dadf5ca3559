//! Which init a lab's hosts get: systemd where it can boot in a namespace (the default), else
//! a shell that only holds the namespaces.

use std::path::Path;

use super::{UpOptions, SYSTEMD};
use crate::cgroup;
use crate::error::{LabError, Result};
use crate::state::Init;
use crate::sys;

/// The hosts' init and, for systemd, the machine's cgroup layout: systemd unless it cannot
/// boot here (then an error if it was asked for, else `none` with a notice).
pub(super) fn choose(opts: &UpOptions) -> Result<(Init, Option<cgroup::Layout>)> {
    if opts.init == Some(Init::None) {
        return Ok((Init::None, None));
    }
    let why_not = systemd_can_boot(
        Path::new(SYSTEMD).exists(),
        sys::have_program("setpriv"),
        sys::have_program("ifup"),
        cgroup::Layout::detect(),
    );
    match (why_not, opts.init) {
        (Ok(layout), _) => Ok((Init::Systemd, Some(layout))),
        (Err(why), Some(Init::Systemd)) => Err(LabError::Other(format!(
            "--init systemd: systemd cannot boot in a lab host here: {why}; use --init none"
        ))),
        (Err(why), _) => {
            eprintln!(
                "lab: systemd cannot boot in a lab host here ({why}): \
                 hosts run without an init (--init none)"
            );
            Ok((Init::None, None))
        }
    }
}

/// Pure: whether systemd can boot in a lab host, from what the machine has; the error says
/// what is missing and how to get it.
fn systemd_can_boot(
    systemd: bool,
    setpriv: bool,
    ifup: bool,
    layout: Result<cgroup::Layout, String>,
) -> Result<cgroup::Layout, String> {
    if !systemd {
        Err(format!("{SYSTEMD} is missing (apt-get install systemd)"))
    } else if !setpriv {
        Err("`setpriv` is missing (apt-get install util-linux)".to_string())
    } else if !ifup {
        Err(
            "`ifup` is missing: hosts configure their address at boot with ifupdown, \
             as Debian's installer leaves a server (apt-get install ifupdown)"
                .to_string(),
        )
    } else {
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unavailability_says_what_is_missing() {
        let hybrid = || {
            cgroup::Layout::detect_in(
                "1 0 0:1 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                 2 0 0:2 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
            )
        };
        assert!(systemd_can_boot(true, true, true, hybrid()).is_ok());
        let e = systemd_can_boot(false, true, true, hybrid()).unwrap_err();
        assert!(e.contains("/lib/systemd/systemd") && e.contains("apt-get install systemd"));
        assert!(systemd_can_boot(true, false, true, hybrid())
            .unwrap_err()
            .contains("setpriv"));
        assert!(systemd_can_boot(true, true, false, hybrid())
            .unwrap_err()
            .contains("ifupdown"));
        let no_cgroups = systemd_can_boot(true, true, true, cgroup::Layout::detect_in(""));
        assert!(no_cgroups.unwrap_err().contains("cgroup"));
    }
}
