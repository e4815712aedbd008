//! How long to wait before reconnection attempt `n`: the first wait, doubled each time, at most
//! 30 s. One rule for the target (`pipeline::retry`) and the sources (`source::resilient`).

use std::time::Duration;

/// The longest wait between two attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The wait before attempt `attempt` (1-based), starting from `first`.
pub fn wait(first: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    first.saturating_mul(factor).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(wait(s(1), 1), s(1));
        assert_eq!(wait(s(1), 2), s(2));
        assert_eq!(wait(s(1), 4), s(8));
        assert_eq!(wait(s(1), 6), s(30));
        assert_eq!(wait(s(1), 200), s(30));
        assert_eq!(wait(Duration::from_millis(500), 0), Duration::from_millis(500));
    }
}
