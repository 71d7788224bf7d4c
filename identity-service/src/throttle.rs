//! In-memory brute-force throttling: failures are counted per key in fixed windows; once a key
//! reaches its limit, further attempts are refused until the window ends. Time is a parameter.
//!
//! The map is bounded: when full, expired windows are dropped first, then keys that are not
//! currently blocking, so flooding with fresh keys cannot unblock a throttled account.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};

use crate::config::ThrottleConfig;

/// What is being counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Failed logins (or password checks) for one normalised email.
    LoginAccount(String),
    /// Failed logins from one peer address.
    LoginPeer(IpAddr),
    /// Wrong verification codes for one normalised email.
    Verify(String),
    /// Verification mails requested for one normalised email.
    Resend(String),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    count: u32,
}

/// Failure counters shared by all handlers.
pub struct Throttle {
    config: ThrottleConfig,
    windows: Mutex<HashMap<Key, Window>>,
}

impl Throttle {
    /// Counters with the given limits.
    pub fn new(config: ThrottleConfig) -> Self {
        Self { config, windows: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::LoginAccount(_) => self.config.account_failures,
            Key::LoginPeer(_) => self.config.peer_failures,
            Key::Verify(_) => self.config.verify_failures,
            Key::Resend(_) => self.config.resend_per_account,
        }
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.window).unwrap_or(chrono::Duration::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Window>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep going.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` when `key` has reached its limit in the current window.
    pub fn check(&self, key: &Key, now: DateTime<Utc>) -> Result<(), Duration> {
        let limit = self.limit(key);
        let map = self.lock();
        match map.get(key) {
            Some(w) if w.start + self.window() > now && w.count >= limit => {
                let left = (w.start + self.window() - now).to_std().unwrap_or_default();
                Err(left.max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure (or one use) of `key`.
    pub fn record(&self, key: Key, now: DateTime<Utc>) {
        let window = self.window();
        let mut map = self.lock();
        if map.len() >= self.config.max_entries && !map.contains_key(&key) {
            map.retain(|_, w| w.start + window > now);
            if map.len() >= self.config.max_entries {
                let limits = |k: &Key| self.limit(k);
                map.retain(|k, w| w.count >= limits(k));
            }
            if map.len() >= self.config.max_entries {
                return;
            }
        }
        let entry = map.entry(key).or_insert(Window { start: now, count: 0 });
        if entry.start + window <= now {
            *entry = Window { start: now, count: 0 };
        }
        entry.count = entry.count.saturating_add(1);
    }

    /// Forgets `key` (after a success).
    pub fn reset(&self, key: &Key) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(ThrottleConfig {
            window: Duration::from_secs(60),
            account_failures: 2,
            max_entries: 3,
            ..ThrottleConfig::default()
        })
    }

    #[test]
    fn blocks_at_the_limit_until_the_window_ends() {
        let t = throttle();
        let now = Utc::now();
        let key = Key::LoginAccount("a@b.c".into());
        t.record(key.clone(), now);
        assert!(t.check(&key, now).is_ok());
        t.record(key.clone(), now);
        let wait = t.check(&key, now + chrono::Duration::seconds(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(t.check(&key, now + chrono::Duration::seconds(60)).is_ok());
        t.record(key.clone(), now);
        t.reset(&key);
        assert!(t.check(&key, now).is_ok());
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_blocked_keys() {
        let t = throttle();
        let now = Utc::now();
        let blocked = Key::LoginAccount("x".into());
        t.record(blocked.clone(), now);
        t.record(blocked.clone(), now);
        for i in 0..10 {
            t.record(Key::LoginAccount(i.to_string()), now);
        }
        assert!(t.lock().len() <= 3);
        assert!(t.check(&blocked, now).is_err());
    }
}
