//! The VRRP state machine of one virtual router (RFC 5798 section 6.4, RFC 3768 section 6.4),
//! with keepalived's behaviour where the RFC leaves room. Pure: no I/O and no clock.
//!
//! Driven quinn-style: the caller passes events with the current time ([`Instance::handle`]),
//! calls [`Instance::handle_timeout`] when [`Instance::poll_timeout`] is reached, and drains
//! [`Instance::poll_action`] after each call.
//!
//! keepalived behaviours followed on purpose (the RFC allows or is silent):
//! - `state = "MASTER"` is a hint only: a non-owner always starts as Backup and waits
//!   Master_Down_Interval; priority 255 (owner) becomes Master at once.
//! - A master that receives a lower-priority advert sends its own advert at once
//!   (keepalived's default `lower_prio_no_advert false`) and a new GARP burst, so a healed
//!   split brain ends with neighbours pointing at the winner; a master that receives a
//!   higher-priority advert sends one advert of its own before stepping down so the winner
//!   learns of the split (keepalived's `higher_prio_send_advert`).
//! - v2: adverts whose interval differs from ours are dropped (keepalived: "advertisement
//!   interval mismatch"); Skew_Time is (256 - priority) / 256 s as in RFC 3768.
//!   v3: the backup learns the master's interval and Skew_Time scales with it (RFC 5798).
//! - `preempt_delay` (keepalived.conf(5): "delay until preemption ... at startup or when seeing
//!   a lower priority master"): a "preempt time" is set to now + delay at startup, when the first
//!   lower-priority advert is seen without one, and again whenever a higher-priority master is
//!   seen; it is cleared when stepping down from Master. Until it passes, lower-priority adverts
//!   are accepted like a master's; afterwards they are ignored and the down timer preempts. It
//!   never delays taking over from a master that went silent.
//! - Entering Master emits, in order: Transition, AddVips, SendAdvert, SendGratuitous (the
//!   advert first so backups stop their timers; GARP once the addresses exist). The
//!   announcement is repeated [`GARP_REPEAT`] times [`GARP_SPACING`] apart while still Master
//!   (keepalived's vrrp_garp_master_repeat): one frame can be lost.
//! - Leaving Master for Fault sends one priority-0 advert (keepalived does) so a backup takes
//!   over after Skew_Time instead of Master_Down_Interval; no adverts are sent while in Fault.
//! - Address list: the advert's addresses must equal ours as a set (keepalived checks the count
//!   and that each of its VIPs is present); a mismatch is dropped and counted.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::wire::vrrp::{self, Advert, Auth, Version};

mod stats;
#[cfg(test)]
mod tests;
mod timer;

pub use stats::{DropReason, Stats};
pub use timer::Timer;
use timer::TimerTable;

/// keepalived's vrrp_garp_master_repeat: announcements sent per takeover.
pub const GARP_REPEAT: u32 = 5;
/// Between two announcements of one takeover.
pub const GARP_SPACING: Duration = Duration::from_millis(100);

/// RFC states plus Fault (keepalived's tracking state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Static configuration of one instance (derived from `config::VrrpInstance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub name: String,
    pub vrid: u8,
    pub version: vrrp::Version,
    /// Configured (base) priority; 255 = address owner.
    pub priority: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Advertised addresses, config order.
    pub vips: Vec<IpAddr>,
    pub auth: vrrp::Auth,
    /// Own address used as source (for election ties).
    pub primary_addr: IpAddr,
    /// `state = "MASTER"` in config (keepalived: hint only).
    pub initial_master_hint: bool,
    /// A pacer thread repeats the master's adverts (see [`Action::Pace`]); the instance then
    /// arms no Adver_Timer and only sends the adverts a protocol event calls for.
    pub paced: bool,
}

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Startup,
    /// A decoded advert; the instance checks vrid, version, auth and address list itself.
    Advert {
        src: IpAddr,
        advert: vrrp::Advert,
    },
    /// Graceful stop: send priority 0 (if master), remove VIPs, go Initialize.
    Shutdown,
    /// Effective priority after tracking. 0 is never meant (use Fault); it is treated as 1.
    SetPriority(u8),
    /// true = enter/stay Fault (link down, weight-0 track failing); false = leave.
    Fault(bool),
    /// The VIPs had to be put back on the interface (someone removed them while we were
    /// Master): neighbours may have dropped their entries, so announce again (a full burst).
    VipsRestored,
}

/// Outputs, to be executed in order by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendAdvert(vrrp::Advert),
    AddVips,
    RemoveVips,
    /// GARP / unsolicited NA for all VIPs (the shell repeats a few times).
    SendGratuitous,
    Transition {
        from: State,
        to: State,
        reason: String,
    },
    /// Paced mode: repeat this advert every advert interval from now on (Some), or stop (None;
    /// always before a priority-0 advert).
    Pace(Option<vrrp::Advert>),
}

/// One VRRP virtual router.
#[derive(Debug)]
pub struct Instance {
    cfg: InstanceConfig,
    state: State,
    priority: u8,
    /// Master_Adver_Interval: ours until a v3 master tells us its own.
    master_interval: Duration,
    master_addr: Option<IpAddr>,
    /// Master_Down_Timer, Adver_Timer and the GARP repeat.
    timers: TimerTable,
    /// Announcements still to send for the current takeover.
    garp_left: u32,
    /// Paced mode: the pacer is repeating our adverts.
    pacing: bool,
    /// When the master we follow last spoke (for the reason of a takeover).
    heard_at: Option<Instant>,
    /// keepalived's preempt_time (only used with a non-zero preempt_delay).
    preempt_at: Option<Instant>,
    fault: bool,
    actions: VecDeque<Action>,
    stats: Stats,
}

/// Interval in centiseconds for the wire, clamped to what the field can carry.
fn interval_cs(d: Duration) -> u16 {
    let cs = d.as_millis() / 10;
    u16::try_from(cs.clamp(1, u128::from(vrrp::V3_MAX_INTERVAL_CS))).unwrap_or(1)
}

fn sorted(addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = addrs.to_vec();
    v.sort();
    v
}

impl Instance {
    pub fn new(cfg: InstanceConfig) -> Instance {
        let priority = cfg.priority.max(1);
        Instance {
            master_interval: cfg.advert_interval,
            cfg,
            state: State::Initialize,
            priority,
            master_addr: None,
            timers: TimerTable::default(),
            garp_left: 0,
            pacing: false,
            heard_at: None,
            preempt_at: None,
            fault: false,
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn effective_priority(&self) -> u8 {
        self.priority
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Who is master as far as we know (self if Master).
    pub fn master_addr(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.cfg.primary_addr),
            State::Backup => self.master_addr,
            State::Initialize | State::Fault => None,
        }
    }

    /// The interval a backup currently uses for Master_Down_Interval.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_interval
    }

    /// Skew_Time with our effective priority: v3 ((256 - p) * Master_Adver_Interval) / 256,
    /// v2 (256 - p) / 256 seconds (RFC 3768). Not truncated.
    pub fn skew_time(&self) -> Duration {
        let factor = 256 - u32::from(self.priority);
        match self.cfg.version {
            Version::V2 => Duration::from_secs(1) * factor / 256,
            Version::V3 => self.master_interval * factor / 256,
        }
    }

    /// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        let interval = match self.cfg.version {
            Version::V2 => self.cfg.advert_interval,
            Version::V3 => self.master_interval,
        };
        interval * 3 + self.skew_time()
    }

    /// The earliest armed timer: call [`Instance::handle_timeout`] when it is reached.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// When `timer` fires, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in self.timers.expired(now) {
            self.timers.stop(timer);
            match (timer, self.state) {
                (Timer::MasterDown, State::Backup) => {
                    let reason = self.silence(now);
                    self.become_master(now, reason)
                }
                (Timer::Adver, State::Master) => self.send_advert(now, self.priority),
                (Timer::Garp, State::Master) => self.announce(now),
                // A timer of a state we left: leaving stops it, so this is only defensive.
                _ => {}
            }
        }
    }

    pub fn handle(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Startup => self.startup(now),
            Event::Advert { src, advert } => {
                let _ = self.handle_advert(now, src, advert);
            }
            Event::Shutdown => self.shutdown(),
            Event::SetPriority(p) => self.set_priority(now, p),
            Event::Fault(f) => self.set_fault(now, f),
            Event::VipsRestored => {
                if self.state == State::Master {
                    self.garp_left = GARP_REPEAT;
                    self.announce(now);
                }
            }
        }
    }

    /// Why the Master_Down_Timer fired, for a person: who went silent and for how long.
    fn silence(&self, now: Instant) -> String {
        match (self.master_addr, self.heard_at) {
            (Some(addr), Some(at)) => format!(
                "master down timer expired: master {addr} silent for {:.2} s",
                now.duration_since(at).as_secs_f64()
            ),
            _ => "master down timer expired: no master heard".to_string(),
        }
    }

    /// Applies a reloaded configuration without leaving the current state; the caller only
    /// does this when the identity (VRID, version, address family, interface) is unchanged.
    /// A Master advertises a changed VIP list, interval or password at once, the RFC way,
    /// and adds and announces the new VIPs (the shell removes the ones no longer listed). The
    /// base priority comes in through tracking ([`Event::SetPriority`]), as at start.
    pub fn reconfigure(&mut self, now: Instant, cfg: InstanceConfig) {
        let vips_changed = sorted(&cfg.vips) != sorted(&self.cfg.vips);
        let advert_changed = vips_changed
            || cfg.advert_interval != self.cfg.advert_interval
            || cfg.auth != self.cfg.auth;
        if cfg.preempt_delay.is_zero() {
            self.preempt_at = None;
        }
        self.cfg = cfg;
        if self.state != State::Master {
            return;
        }
        if vips_changed {
            self.actions.push_back(Action::AddVips);
        }
        if advert_changed {
            self.send_advert(now, self.priority);
        }
        if vips_changed {
            self.garp_left = GARP_REPEAT;
            self.announce(now);
        }
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.vrid,
            priority,
            interval_cs: match self.cfg.version {
                // v2 carries whole seconds; config validation guarantees a whole interval.
                Version::V2 => {
                    let secs = self.cfg.advert_interval.as_secs().clamp(1, 255);
                    u16::try_from(secs * 100).unwrap_or(100)
                }
                Version::V3 => interval_cs(self.cfg.advert_interval),
            },
            addrs: self.cfg.vips.clone(),
            auth: match self.cfg.version {
                Version::V2 => self.cfg.auth,
                Version::V3 => Auth::None,
            },
        }
    }

    fn send_advert(&mut self, now: Instant, priority: u8) {
        let adv = self.advert(priority);
        self.actions.push_back(Action::SendAdvert(adv));
        self.stats.adverts_sent += 1;
        if !self.cfg.paced {
            self.timers
                .set(Timer::Adver, now + self.cfg.advert_interval);
        } else if self.state == State::Master && priority == self.priority {
            self.actions
                .push_back(Action::Pace(Some(self.advert(priority))));
            self.pacing = true;
        }
    }

    /// Paced mode: the pacer stops repeating our adverts.
    fn stop_pacing(&mut self) {
        if self.pacing {
            self.pacing = false;
            self.actions.push_back(Action::Pace(None));
        }
    }

    /// One announcement now, the next one GARP_SPACING later while some are left.
    fn announce(&mut self, now: Instant) {
        self.actions.push_back(Action::SendGratuitous);
        self.garp_left = self.garp_left.saturating_sub(1);
        if self.garp_left > 0 {
            self.timers.set(Timer::Garp, now + GARP_SPACING);
        }
    }

    fn transition(&mut self, to: State, reason: String) {
        let from = self.state;
        self.state = to;
        self.actions
            .push_back(Action::Transition { from, to, reason });
    }

    fn become_master(&mut self, now: Instant, reason: String) {
        self.transition(State::Master, reason);
        self.stats.became_master += 1;
        self.timers.stop(Timer::MasterDown);
        self.master_addr = None;
        self.actions.push_back(Action::AddVips);
        // Advert first so backups stop their timers, then GARP once the VIPs exist.
        self.send_advert(now, self.priority);
        self.garp_left = GARP_REPEAT;
        self.announce(now);
    }

    /// Leaving Master (or stopping): no more adverts or announcements from this takeover.
    fn stop_master_timers(&mut self) {
        self.stop_pacing();
        self.timers.stop(Timer::Adver);
        self.timers.stop(Timer::Garp);
        self.garp_left = 0;
    }

    fn become_backup(&mut self, now: Instant, reason: String) {
        let was_master = self.state == State::Master;
        self.transition(State::Backup, reason);
        if was_master {
            self.actions.push_back(Action::RemoveVips);
            // keepalived clears preempt_time when it steps down from master.
            self.preempt_at = None;
        }
        self.stop_master_timers();
        self.timers
            .set(Timer::MasterDown, now + self.master_down_interval());
    }

    /// Initialize -> Master (owner) or Backup; also the way out of Fault.
    fn enter_running(&mut self, now: Instant, why: &str) {
        self.master_interval = self.cfg.advert_interval;
        self.master_addr = None;
        if self.priority == 255 {
            self.become_master(now, format!("{why}: priority 255 (address owner)"));
        } else {
            let hint = if self.cfg.initial_master_hint {
                " (state MASTER is only a hint)"
            } else {
                ""
            };
            self.become_backup(now, format!("{why}{hint}"));
        }
    }

    fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if !self.cfg.preempt_delay.is_zero() {
            self.preempt_at = Some(now + self.cfg.preempt_delay);
        }
        if self.fault {
            self.transition(State::Fault, "startup while faulty".to_string());
            return;
        }
        self.enter_running(now, "startup");
    }

    fn shutdown(&mut self) {
        match self.state {
            State::Initialize => return,
            State::Master => {
                self.stop_pacing();
                let adv = self.advert(0);
                self.actions.push_back(Action::SendAdvert(adv));
                self.stats.adverts_sent += 1;
                self.actions.push_back(Action::RemoveVips);
            }
            State::Backup | State::Fault => {}
        }
        self.transition(State::Initialize, "shutdown".to_string());
        self.timers.stop(Timer::MasterDown);
        self.stop_master_timers();
        self.preempt_at = None;
        self.master_addr = None;
    }

    fn set_priority(&mut self, now: Instant, p: u8) {
        let p = p.max(1);
        if p == self.priority {
            return;
        }
        self.priority = p;
        // Let the peers see the change now rather than one interval later.
        if self.state == State::Master {
            self.send_advert(now, p);
        }
    }

    fn set_fault(&mut self, now: Instant, fault: bool) {
        self.fault = fault;
        match (fault, self.state) {
            (true, State::Master) => {
                self.stop_pacing();
                let adv = self.advert(0);
                self.actions.push_back(Action::SendAdvert(adv));
                self.stats.adverts_sent += 1;
                self.actions.push_back(Action::RemoveVips);
                self.enter_fault();
            }
            (true, State::Backup) => self.enter_fault(),
            (false, State::Fault) => self.enter_running(now, "fault cleared"),
            _ => {}
        }
    }

    fn enter_fault(&mut self) {
        self.transition(
            State::Fault,
            "fault (tracked interface or script)".to_string(),
        );
        self.timers.stop(Timer::MasterDown);
        self.stop_master_timers();
        self.master_addr = None;
    }

    /// Why this advert must be dropped (None = it is processed).
    fn check_advert(&self, src: IpAddr, adv: &Advert) -> Option<DropReason> {
        let v2 = self.cfg.version == Version::V2;
        let ours = self.advert(0);
        let reason = if adv.vrid != self.cfg.vrid {
            DropReason::Vrid { got: adv.vrid }
        } else if adv.version != self.cfg.version {
            DropReason::Version { got: adv.version }
        } else if src == self.cfg.primary_addr {
            DropReason::Own
        } else if v2 && adv.auth != self.cfg.auth {
            DropReason::Auth
        } else if v2 && adv.interval_cs != ours.interval_cs {
            DropReason::Interval {
                got_cs: adv.interval_cs,
                ours_cs: ours.interval_cs,
            }
        } else if sorted(&adv.addrs) != sorted(&self.cfg.vips) {
            DropReason::AddrList {
                got: adv.addrs.clone(),
            }
        } else if matches!(self.state, State::Initialize | State::Fault) {
            DropReason::NotRunning(self.state)
        } else {
            return None;
        };
        Some(reason)
    }

    /// A received advert. `Err`: it was dropped (and counted), with why, for the shell to log
    /// as keepalived does.
    pub fn handle_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        adv: Advert,
    ) -> Result<(), DropReason> {
        if let Some(reason) = self.check_advert(src, &adv) {
            self.count_drop(&reason);
            return Err(reason);
        }
        self.stats.adverts_accepted += 1;
        if adv.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        match self.state {
            State::Backup => self.backup_rx(now, src, &adv),
            State::Master => self.master_rx(now, src, &adv),
            State::Initialize | State::Fault => {}
        }
        Ok(())
    }

    fn count_drop(&mut self, reason: &DropReason) {
        let s = &mut self.stats;
        *match reason {
            DropReason::Vrid { .. } => &mut s.dropped_vrid,
            DropReason::Version { .. } => &mut s.dropped_version,
            DropReason::Own => &mut s.dropped_own,
            DropReason::Auth => &mut s.dropped_auth,
            DropReason::Interval { .. } => &mut s.dropped_interval,
            DropReason::AddrList { .. } => &mut s.dropped_addr_list,
            DropReason::NotRunning(_) => &mut s.ignored_not_running,
        } += 1;
    }

    fn learn_interval(&mut self, adv: &Advert) {
        if self.cfg.version == Version::V3 {
            self.master_interval = adv.interval();
        }
    }

    fn backup_rx(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == 0 {
            // The master resigns: take over after Skew_Time unless someone else speaks first.
            self.timers.set(Timer::MasterDown, now + self.skew_time());
            return;
        }
        let delaying = !self.cfg.preempt_delay.is_zero() && self.preempt_at.is_none_or(|t| now < t);
        if !self.cfg.preempt || adv.priority >= self.priority || delaying {
            // keepalived: a higher-priority master (re)starts the delay; otherwise the first
            // lower-priority advert starts it if startup did not.
            if !self.cfg.preempt_delay.is_zero()
                && (adv.priority > self.priority || self.preempt_at.is_none())
            {
                self.preempt_at = Some(now + self.cfg.preempt_delay);
            }
            self.learn_interval(adv);
            self.master_addr = Some(src);
            self.heard_at = Some(now);
            self.timers
                .set(Timer::MasterDown, now + self.master_down_interval());
        }
        // else: lower priority and we preempt: ignore it, our timer will expire.
    }

    fn master_rx(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == 0 {
            // Another master resigned: assert ourselves at once.
            self.send_advert(now, self.priority);
            return;
        }
        let higher = adv.priority > self.priority
            || (adv.priority == self.priority && src > self.cfg.primary_addr);
        if higher {
            self.learn_interval(adv);
            let reason = if adv.priority > self.priority {
                format!(
                    "higher priority {} from {src} (ours {})",
                    adv.priority, self.priority
                )
            } else {
                format!(
                    "equal priority {} from higher address {src} (ours {})",
                    adv.priority, self.cfg.primary_addr
                )
            };
            // Two masters: the other may never hear from us once we are quiet (its adverts
            // can reach us first). One advert of ours tells it there was a split, so it
            // re-announces the VIPs (keepalived's higher_prio_send_advert, on by default here).
            self.send_advert(now, self.priority);
            self.become_backup(now, reason);
            self.master_addr = Some(src);
        } else {
            // A lower-priority master: a split brain is healing. Answer at once so it steps
            // down, and announce the VIPs again: neighbours may have followed its GARPs
            // (keepalived needs garp_lower_prio_repeat for this).
            self.send_advert(now, self.priority);
            self.garp_left = GARP_REPEAT;
            self.announce(now);
        }
    }
}
