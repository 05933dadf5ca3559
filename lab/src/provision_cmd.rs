//! `lab provision [provision flags]`: runs `provision` on the lab's own inventory from the lab's
//! client namespace, the only place the lab's addresses are reachable from (they are
//! deliberately not routed from the machine's own namespace), with the lab's SSH key and
//! known_hosts. What a namespace cannot have (yum, firewalld, SELinux tools, ...) is stood in
//! for by `provision::doubles`, installed into each host's own /usr/local/bin first.

use std::process::{Command, ExitCode};

use lab::{Lab, LabError};

pub fn run(lab: &Lab, flags: &[String]) -> Result<ExitCode, LabError> {
    let running = lab.open()?;
    for h in running.hosts() {
        for (name, script) in provision::doubles::ALL {
            h.write_file(&format!("/usr/local/bin/{name}"), script, 0o755)?;
        }
    }
    let status = Command::new("ip")
        .args(["netns", "exec", &running.plan.client.ns])
        .arg(lab.bin_dir.join("provision"))
        .arg(lab.dir.inventory_file())
        .arg("--known-hosts")
        .arg(lab.dir.known_hosts())
        .arg("--key")
        .arg(lab.dir.ssh_key())
        .arg("--bin-dir")
        .arg(&lab.bin_dir)
        .args(flags)
        .status()
        .map_err(|source| LabError::Spawn {
            command: "provision".into(),
            source,
        })?;
    let code = status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    Ok(ExitCode::from(code))
}
