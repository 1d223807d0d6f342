//! Rate limits for log lines that would otherwise repeat per connection
//! or per request.

/// Lets a per-connection log line through at most `per_window` times per
/// [`LogBudget::WINDOW`] seconds: a client population that all rejects a
/// new certificate would otherwise write a line per connection. The
/// metrics count every one.
#[derive(Debug)]
pub(crate) struct LogBudget {
    window: std::sync::atomic::AtomicU64,
    used: std::sync::atomic::AtomicU32,
    pub(crate) per_window: u32,
}

/// What [`LogBudget::take`] allows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    Log,
    /// The first line over budget: say that the rest go unlogged.
    LastOne,
    Quiet,
}

impl LogBudget {
    pub(crate) const WINDOW: u64 = 10;

    pub(crate) fn new(per_window: u32) -> LogBudget {
        LogBudget {
            window: std::sync::atomic::AtomicU64::new(0),
            used: std::sync::atomic::AtomicU32::new(0),
            per_window,
        }
    }

    /// Counts one line at `now_secs` (unix) and says what to do with it.
    pub(crate) fn take(&self, now_secs: u64) -> Budget {
        use std::sync::atomic::Ordering::Relaxed;
        let window = now_secs / Self::WINDOW;
        if self.window.swap(window, Relaxed) != window {
            self.used.store(0, Relaxed);
        }
        match self.used.fetch_add(1, Relaxed) {
            n if n < self.per_window => Budget::Log,
            n if n == self.per_window => Budget::LastOne,
            _ => Budget::Quiet,
        }
    }

    /// [`LogBudget::take`] at the current time.
    pub(crate) fn take_now(&self) -> Budget {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::{Budget, LogBudget};

    #[test]
    fn failed_handshake_lines_are_bounded_per_window_and_say_so_once() {
        let budget = LogBudget::new(20);
        let start = 1_000 * LogBudget::WINDOW;
        for _ in 0..budget.per_window {
            assert_eq!(budget.take(start), Budget::Log);
        }
        assert_eq!(budget.take(start + 1), Budget::LastOne);
        assert_eq!(budget.take(start + 2), Budget::Quiet);
        assert_eq!(budget.take(start + LogBudget::WINDOW - 1), Budget::Quiet);
        // The next window starts afresh.
        assert_eq!(budget.take(start + LogBudget::WINDOW), Budget::Log);
    }

    #[test]
    fn a_once_per_window_line_repeats_under_steady_traffic() {
        // One connection a second for 30 s: a line in each 10 s window.
        let budget = LogBudget::new(1);
        let start = 1_000 * LogBudget::WINDOW;
        let logged = (0..30)
            .filter(|s| budget.take(start + s) == Budget::Log)
            .count();
        assert_eq!(logged, 3);
    }
}
