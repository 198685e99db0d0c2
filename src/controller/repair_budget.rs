//! A write budget per object: at most [`MAX_WRITES`] writes to one object in any
//! [`WINDOW`]. Two controllers that each force their own value onto the same field (our
//! forced server-side apply against another field manager, or against a plain update)
//! would otherwise rewrite the object as fast as the watches deliver, forever. With the
//! budget spent, the object is left as the other writer made it and reported as a
//! `Conflict` until the window has passed; then one more repair is tried.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Writes allowed to one object per window.
pub const MAX_WRITES: usize = 3;
/// The window: a minute, the unit the operator's promise is stated in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Which object a write goes to: kind, namespace, name (hashed: the budget holds an entry
/// for every object written in the last minute, 30,000 of them in a 10,000-namespace
/// converge, so it keeps 8 bytes of key instead of three strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteTarget(u64);

impl WriteTarget {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (kind, namespace, name).hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// The times of the last writes to one object (oldest first; unused slots are None).
type Recent = [Option<Instant>; MAX_WRITES];

/// Per-object write times within the window.
#[derive(Debug, Default)]
pub struct RepairBudget {
    recent: Mutex<HashMap<WriteTarget, Recent>>,
    /// Size of the map after the last sweep of expired entries.
    swept_at_len: Mutex<usize>,
}

impl RepairBudget {
    /// Ok if another write to `target` is allowed at `now`; else how long until it is.
    pub fn check(&self, target: WriteTarget, now: Instant) -> Result<(), Duration> {
        let recent = lock(&self.recent);
        let Some(times) = recent.get(&target) else {
            return Ok(());
        };
        let in_window: Vec<Instant> = times
            .iter()
            .flatten()
            .copied()
            .filter(|t| now.saturating_duration_since(*t) < WINDOW)
            .collect();
        match in_window.first() {
            Some(oldest) if in_window.len() >= MAX_WRITES => {
                Err(WINDOW.saturating_sub(now.saturating_duration_since(*oldest)))
            }
            _ => Ok(()),
        }
    }

    /// Records a write to `target` made at `now`.
    pub fn record(&self, target: WriteTarget, now: Instant) {
        let mut recent = lock(&self.recent);
        let times = recent.entry(target).or_default();
        // Drop the oldest, keep the rest in order, add now at the end.
        times.rotate_left(1);
        times[MAX_WRITES - 1] = Some(now);
        // Sweep entries whose every write has left the window, whenever the map has doubled
        // since the last sweep: amortised O(1) per write, and the map stays bounded by the
        // writes of about one window.
        let mut swept_at_len = lock(&self.swept_at_len);
        if recent.len() >= (*swept_at_len * 2).max(1024) {
            recent.retain(|_, times| {
                times
                    .iter()
                    .flatten()
                    .any(|t| now.saturating_duration_since(*t) < WINDOW)
            });
            recent.shrink_to_fit();
            *swept_at_len = recent.len();
        }
    }

    /// Number of objects with a write in memory (for tests and debugging).
    pub fn tracked(&self) -> usize {
        lock(&self.recent).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_writes_a_minute_then_a_pause_until_the_oldest_leaves_the_window() {
        let budget = RepairBudget::default();
        let target = WriteTarget::new("NetworkPolicy", "shop", "deny-all");
        let start = Instant::now();
        for second in [0, 10, 20] {
            let at = start + Duration::from_secs(second);
            assert_eq!(budget.check(target, at), Ok(()), "write at {second}s");
            budget.record(target, at);
        }
        let at_30 = start + Duration::from_secs(30);
        assert_eq!(budget.check(target, at_30), Err(Duration::from_secs(30)));
        // Other objects are not affected.
        let other = WriteTarget::new("NetworkPolicy", "shop", "allow-dns");
        assert_eq!(budget.check(other, at_30), Ok(()));
        // Once the first write is a minute old, one more is allowed.
        let at_60 = start + Duration::from_secs(60);
        assert_eq!(budget.check(target, at_60), Ok(()));
        budget.record(target, at_60);
        assert_eq!(
            budget.check(target, start + Duration::from_secs(61)),
            Err(Duration::from_secs(9))
        );
    }

    #[test]
    fn any_sixty_seconds_hold_at_most_three_writes() {
        // A writer that retries as soon as the budget allows, for ten minutes.
        let budget = RepairBudget::default();
        let target = WriteTarget::new("Role", "a", "b");
        let start = Instant::now();
        let mut writes = Vec::new();
        for tenth in 0..6000 {
            let now = start + Duration::from_millis(tenth * 100);
            if budget.check(target, now).is_ok() {
                budget.record(target, now);
                writes.push(now);
            }
        }
        for (i, first) in writes.iter().enumerate() {
            let in_window = writes[i..]
                .iter()
                .take_while(|t| t.duration_since(*first) < WINDOW)
                .count();
            assert!(
                in_window <= MAX_WRITES,
                "{in_window} writes within a minute"
            );
        }
        assert!(
            writes.len() >= 30,
            "it still repairs: {} writes",
            writes.len()
        );
    }

    #[test]
    fn expired_entries_are_swept() {
        let budget = RepairBudget::default();
        let start = Instant::now();
        for i in 0..2000 {
            budget.record(WriteTarget::new("Role", "ns", &i.to_string()), start);
        }
        let later = start + WINDOW + Duration::from_secs(1);
        for i in 0..1100 {
            budget.record(WriteTarget::new("Role", "other", &i.to_string()), later);
        }
        assert!(
            budget.tracked() <= 1100,
            "old entries kept: {}",
            budget.tracked()
        );
    }
}
