//! Round robin shared by all workers: nginx's smooth-WRR sequence computed once per upstream
//! (a "cycle" of peer indices) and one atomic sequence number indexing it. Each worker's pick
//! is one relaxed `fetch_add`, so consecutive picks alternate across workers exactly as one
//! nginx with a shared `zone` would pick, without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Longest cycle precomputed (after dividing the weights by their gcd). Weights summing to
/// more fall back to each worker's own smooth WRR (nginx's behaviour without a `zone`).
pub const MAX_CYCLE: u64 = 4096;

#[derive(Debug)]
pub struct Cycle {
    /// Peer indices in nginx's pick order (indices as the balancer numbers its peers).
    order: Box<[usize]>,
    seq: AtomicU64,
}

impl Cycle {
    /// The smooth-WRR cycle of `(peer index, weight)`; `None` for no peers, zero weights or a
    /// cycle longer than [`MAX_CYCLE`].
    pub fn build(peers: &[(usize, u64)]) -> Option<Cycle> {
        let g = peers.iter().fold(0, |g, &(_, w)| gcd(g, w));
        if g == 0 {
            return None;
        }
        let weights: Vec<i64> = peers
            .iter()
            .map(|&(_, w)| i64::try_from(w / g).unwrap_or(i64::MAX))
            .collect();
        let total: i64 = weights.iter().sum();
        if total <= 0 || total as u64 > MAX_CYCLE {
            return None;
        }
        // Smooth WRR with every peer at full effective weight: scaling all weights by g
        // changes no comparison, so the cycle of w/g is nginx's sequence for w.
        let mut current = vec![0i64; peers.len()];
        let mut order = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += w;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            order.push(peers[best].0);
        }
        Some(Cycle {
            order: order.into_boxed_slice(),
            seq: AtomicU64::new(0),
        })
    }

    /// The next peer of the shared sequence.
    #[inline]
    pub fn next(&self) -> usize {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.order[(n % self.order.len() as u64) as usize]
    }

    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_sequences() {
        let c = Cycle::build(&[(0, 5), (1, 1), (2, 1)]).unwrap();
        assert_eq!(c.order(), &[0, 0, 1, 0, 2, 0, 0]);
        // Scaled weights give the same sequence, reduced.
        let c = Cycle::build(&[(0, 10), (1, 2), (2, 2)]).unwrap();
        assert_eq!(c.order(), &[0, 0, 1, 0, 2, 0, 0]);
        let c = Cycle::build(&[(3, 1), (5, 1)]).unwrap();
        assert_eq!(
            (0..5).map(|_| c.next()).collect::<Vec<_>>(),
            [3, 5, 3, 5, 3]
        );
        let c = Cycle::build(&[(0, 2), (1, 1)]).unwrap();
        assert_eq!(c.order(), &[0, 1, 0]);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(Cycle::build(&[]).is_none());
        assert!(Cycle::build(&[(0, 0)]).is_none());
        assert!(Cycle::build(&[(0, 4096), (1, 1)]).is_none());
        assert_eq!(Cycle::build(&[(0, 7)]).unwrap().order(), &[0]);
    }
}
