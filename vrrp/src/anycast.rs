//! Anycast announcement: instead of electing one master, every healthy balancer puts the VIPs
//! on its anycast interface (`vip0`) and BIRD announces them to the router over BGP; the router
//! spreads flows over all announcing balancers (ECMP). Taking the addresses off withdraws the
//! route.
//!
//! This is the decision, pure: tracking results in, [`Action`]s out, `now` passed in (only to
//! say since when a state holds). The daemon turns `Announce`/`Withdraw` into rtnetlink address
//! changes on the interface.
//!
//! The rules differ from a VRRP instance's on purpose. A VRRP backup with a lowered priority
//! still stands by; an anycast balancer that is announced takes its share of all traffic, so
//! every failing tracked check withdraws, whatever its weight. And a check with no result yet
//! withdraws too: a balancer that starts with a dead proxy must not draw traffic until the
//! first probe says it can serve it (a VRRP backup can wait in BACKUP instead).

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

/// Where the announcement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet: nothing decided, nothing on the interface.
    Init,
    /// The VIPs are on the interface: BIRD announces them.
    Announced,
    /// The VIPs are off the interface: no route from this balancer.
    Withdrawn,
    /// Stopped (vrrp exiting): withdrawn for good.
    Stopped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Init => "INIT",
            State::Announced => "ANNOUNCED",
            State::Withdrawn => "WITHDRAWN",
            State::Stopped => "STOPPED",
        })
    }
}

/// What tracking says about this balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every tracked script passes and every tracked link is up.
    Healthy,
    /// Something fails or has not reported yet: why.
    Unhealthy(String),
}

/// The verdict from the tracked scripts (name, fall/rise state: None until the first result)
/// and links (name, up). Links first: a down link explains a failing HTTP probe too.
pub fn verdict(scripts: &[(&str, Option<bool>)], links: &[(&str, bool)]) -> Verdict {
    if let Some((name, _)) = links.iter().find(|(_, up)| !up) {
        return Verdict::Unhealthy(format!("interface {name} is down"));
    }
    if let Some((name, _)) = scripts.iter().find(|(_, ok)| *ok == Some(false)) {
        return Verdict::Unhealthy(format!("track script {name} is failing"));
    }
    if let Some((name, _)) = scripts.iter().find(|(_, ok)| ok.is_none()) {
        return Verdict::Unhealthy(format!(
            "waiting for the first result of track script {name}"
        ));
    }
    Verdict::Healthy
}

/// What the daemon must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put every VIP on the interface.
    Announce,
    /// Take every VIP off the interface.
    Withdraw,
    /// The state changed (log it, run the notify script, count it).
    Transition {
        from: State,
        to: State,
        reason: String,
    },
}

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Tracking changed (or is evaluated for the first time).
    Health(Verdict),
    /// Someone removed our VIPs from the interface while announced (`ip addr flush`, a
    /// network manager): put them back.
    VipsMissing,
    /// vrrp is stopping: withdraw, and stay withdrawn.
    Shutdown,
}

/// The announcement state machine.
#[derive(Debug, Clone)]
pub struct Announcement {
    state: State,
    reason: String,
    since: Option<Instant>,
    transitions: u64,
    actions: VecDeque<Action>,
}

impl Default for Announcement {
    fn default() -> Self {
        Self::new()
    }
}

impl Announcement {
    pub fn new() -> Announcement {
        Announcement {
            state: State::Init,
            reason: String::new(),
            since: None,
            transitions: 0,
            actions: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Why the current state was entered.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// When the current state was entered (None before the first event).
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn handle(&mut self, now: Instant, event: Event) {
        match (self.state, event) {
            (State::Stopped, _) => {}
            (_, Event::Shutdown) => {
                self.actions.push_back(Action::Withdraw);
                self.enter(now, State::Stopped, "vrrp is stopping".into());
            }
            (State::Announced, Event::VipsMissing) => self.actions.push_back(Action::Announce),
            (_, Event::VipsMissing) => {}
            (State::Announced, Event::Health(Verdict::Healthy)) => {}
            (_, Event::Health(Verdict::Healthy)) => {
                self.actions.push_back(Action::Announce);
                self.enter(now, State::Announced, "every tracked check passes".into());
            }
            (State::Withdrawn, Event::Health(Verdict::Unhealthy(why))) => {
                // Still withdrawn; keep the reason current (another check may now be the one
                // failing) without counting a transition.
                self.reason = why;
            }
            (_, Event::Health(Verdict::Unhealthy(why))) => {
                // From Init too: a predecessor killed with SIGKILL may have left the VIPs.
                self.actions.push_back(Action::Withdraw);
                self.enter(now, State::Withdrawn, why);
            }
        }
    }

    fn enter(&mut self, now: Instant, to: State, reason: String) {
        let from = self.state;
        self.state = to;
        self.reason = reason.clone();
        self.since = Some(now);
        if from != State::Init {
            self.transitions += 1;
        }
        self.actions
            .push_back(Action::Transition { from, to, reason });
    }
}

#[cfg(test)]
mod tests;
