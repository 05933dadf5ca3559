//! The steps of a host's plan, per OS family. Pure: inventory + family in, [`Plan`] out.

mod anycast;
mod network;
mod roles;
mod system;

use crate::inventory::{Host, Inventory, Role};
use crate::os::Family;
use crate::plan::Plan;
use crate::render::RenderError;

/// The plan for `host` running `family` with the systemd that family ships.
pub fn plan(inv: &Inventory, host: &Host, family: Family) -> Result<Plan, RenderError> {
    plan_for(inv, host, family, family.default_systemd())
}

/// The plan for `host` running `family` with systemd version `systemd`, in order: system
/// basics, the role's services, the VIP check, and the static address last (it may move the
/// connection the tool uses).
pub fn plan_for(
    inv: &Inventory,
    host: &Host,
    family: Family,
    systemd: u32,
) -> Result<Plan, RenderError> {
    if let (Role::Balancer, Some(_), Family::El7) = (host.role, inv.anycast(), family) {
        return Err(RenderError::AnycastUnsupported {
            host: host.name.clone(),
            family,
        });
    }
    let mut steps = vec![system::hostname(host)];
    if family == Family::El7 {
        if let Some(url) = &inv.os.el7_repo_baseurl {
            steps.push(system::el7_repos(url));
        }
    }
    steps.push(system::time(inv, family));
    steps.push(system::firewall(inv, host, family));
    if family.is_el() {
        steps.push(system::selinux());
    }
    match host.role {
        Role::Backend => steps.push(roles::httpd(host, family)),
        Role::Balancer => {
            steps.push(roles::proxy(inv, host, family, systemd)?);
            steps.push(roles::vrrp(inv, host, family, systemd)?);
            match inv.anycast() {
                None => steps.push(roles::vip_check(inv)),
                Some(bgp) => {
                    steps.push(anycast::bird(inv, host, family, bgp)?);
                    steps.push(anycast::announced_check(inv));
                }
            }
        }
    }
    steps.push(network::static_address(inv, host, family));
    Ok(Plan {
        host: host.name.clone(),
        address: host.address.to_string(),
        family,
        systemd,
        steps,
    })
}
