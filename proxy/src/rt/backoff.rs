//! [`LogEvery`]: log a repeating condition (accept failures, connections over a limit) at most
//! once per period with a count, so a flood of them cannot flood the log too.

use std::time::{Duration, Instant};

pub struct LogEvery {
    period: Duration,
    last: Option<Instant>,
    /// Events since the last line.
    count: u64,
}

impl LogEvery {
    pub fn second() -> LogEvery {
        LogEvery::new(Duration::from_secs(1))
    }

    pub fn new(period: Duration) -> LogEvery {
        LogEvery {
            period,
            last: None,
            count: 0,
        }
    }

    /// Count one event; `Some(n)` when a line is due (`n` events since the last one).
    pub fn tick(&mut self) -> Option<u64> {
        self.tick_at(Instant::now())
    }

    pub fn tick_at(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count() {
        let t0 = Instant::now();
        let mut log = LogEvery::second();
        assert_eq!(log.tick_at(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(log.tick_at(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(log.tick_at(t0 + Duration::from_secs(1)), Some(1000));
        assert_eq!(log.tick_at(t0 + Duration::from_millis(1500)), None);
    }
}
