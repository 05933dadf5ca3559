//! The protocol timers of one virtual router in one table indexed by [`Timer`] (as
//! quinn-proto's `TimerTable`): the instance arms and stops them, the shell only asks for the
//! earliest deadline and reports when it is reached.

use std::time::Instant;

/// Every timer an instance can arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Backup: RFC Master_Down_Timer (or Skew_Time after a priority-0 advert).
    MasterDown,
    /// Master: RFC Adver_Timer.
    Adver,
    /// Master: the next repeat of the gratuitous ARP / NA burst.
    Garp,
}

impl Timer {
    pub const ALL: [Timer; 3] = [Timer::MasterDown, Timer::Adver, Timer::Garp];

    fn index(self) -> usize {
        match self {
            Timer::MasterDown => 0,
            Timer::Adver => 1,
            Timer::Garp => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TimerTable([Option<Instant>; Timer::ALL.len()]);

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.index()] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.0[timer.index()] = None;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.index()]
    }

    /// The earliest armed deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    /// The timers due at `now`, in table order.
    pub(super) fn expired(&self, now: Instant) -> impl Iterator<Item = Timer> {
        let table = *self;
        Timer::ALL
            .into_iter()
            .filter(move |t| table.get(*t).is_some_and(|at| at <= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_and_expired() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Adver, t0 + Duration::from_secs(1));
        t.set(Timer::Garp, t0 + Duration::from_millis(100));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(100)));
        assert_eq!(
            t.expired(t0 + Duration::from_millis(100))
                .collect::<Vec<_>>(),
            vec![Timer::Garp]
        );
        t.stop(Timer::Garp);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.expired(t0).count(), 0);
    }
}
