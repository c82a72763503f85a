//! Throttling of failed authentication per client address.
//!
//! Each address (an IPv6 address counts by its /64, which one client usually holds whole) has a
//! fixed window that starts with its first failure. Once `limit` failures fall in the window, the
//! address is refused until the window ends, even with a valid key: a guesser that finds a key
//! cannot use it at once, and nothing tells it that this guess was the right one.
//!
//! Memory is bounded: at most `capacity` addresses are tracked; a new one evicts the address
//! whose window started first. The table is a map plus a queue of window starts, so eviction
//! and the purge of ended windows cost O(1) per failure, whatever the number of addresses.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The most client addresses tracked at once (about 100 bytes each).
pub const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Failure counts of recent client addresses.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    capacity: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    windows: HashMap<IpAddr, Window>,
    /// Every tracked address with its window start, oldest first (one entry per window).
    order: VecDeque<(IpAddr, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// What a failed authentication did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the address is not refused yet.
    Counted,
    /// This failure reached the limit: the address is refused from now until its window ends
    /// (reported once per window, so that it is logged once).
    LimitReached,
}

impl AuthThrottle {
    /// Refuses an address after `limit` failures within `window`; `limit` 0 refuses none.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_capacity(limit, window, MAX_TRACKED_ADDRESSES)
    }

    /// As [`AuthThrottle::new`], tracking at most `capacity` addresses.
    pub fn with_capacity(limit: u32, window: Duration, capacity: usize) -> Self {
        AuthThrottle {
            limit,
            window,
            capacity: capacity.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// How long `client` is still refused, if it is.
    pub fn refused_for(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let window = table.windows.get(&bucket(client))?;
        let ends = window.started + self.window;
        (window.failures >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts a failed authentication from `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Failure {
        if self.limit == 0 {
            return Failure::Counted;
        }
        let client = bucket(client);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.purge_ended(now, self.window);
        if !table.windows.contains_key(&client) {
            if table.windows.len() >= self.capacity {
                table.evict_oldest();
            }
            table.windows.insert(
                client,
                Window {
                    started: now,
                    failures: 0,
                },
            );
            table.order.push_back((client, now));
        }
        let window = table.windows.get_mut(&client).expect("inserted above");
        window.failures = window.failures.saturating_add(1);
        if window.failures == self.limit {
            Failure::LimitReached
        } else {
            Failure::Counted
        }
    }

    /// How many addresses are tracked now.
    pub fn tracked(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.windows.len()
    }
}

impl Table {
    /// Drops the addresses whose window has ended; they are at the front of `order`.
    fn purge_ended(&mut self, now: Instant, window: Duration) {
        while let Some(&(client, started)) = self.order.front() {
            if now < started + window {
                break;
            }
            self.order.pop_front();
            self.windows.remove(&client);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((client, _)) = self.order.pop_front() {
            self.windows.remove(&client);
        }
    }
}

/// The address failures are counted under: an IPv4-mapped IPv6 address is its IPv4 address, and
/// any other IPv6 address counts by its /64 prefix.
pub fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn an_address_is_refused_after_the_limit_until_its_window_ends() {
        let throttle = AuthThrottle::new(3, WINDOW);
        let t0 = Instant::now();
        assert_eq!(throttle.failed(v4(1), t0), Failure::Counted);
        assert_eq!(throttle.failed(v4(1), t0), Failure::Counted);
        assert_eq!(throttle.refused_for(v4(1), t0), None);
        assert_eq!(throttle.failed(v4(1), t0), Failure::LimitReached);
        // Reported once per window.
        assert_eq!(throttle.failed(v4(1), t0), Failure::Counted);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            throttle.refused_for(v4(1), later),
            Some(Duration::from_secs(40))
        );
        assert_eq!(throttle.refused_for(v4(2), later), None);
        assert_eq!(throttle.refused_for(v4(1), t0 + WINDOW), None);
        // A new window starts with the next failure.
        let next = t0 + WINDOW;
        assert_eq!(throttle.failed(v4(1), next), Failure::Counted);
        assert_eq!(throttle.refused_for(v4(1), next), None);
    }

    #[test]
    fn a_limit_of_zero_refuses_nobody() {
        let throttle = AuthThrottle::new(0, WINDOW);
        let t0 = Instant::now();
        for _ in 0..100 {
            throttle.failed(v4(1), t0);
        }
        assert_eq!(throttle.refused_for(v4(1), t0), None);
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn the_table_is_capped_and_evicts_the_oldest_address() {
        let throttle = AuthThrottle::with_capacity(2, WINDOW, 100);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let client = IpAddr::V6(Ipv6Addr::from((u128::from(i) + 1) << 64));
            let at = t0 + Duration::from_millis(u64::from(i));
            throttle.failed(client, at);
            throttle.failed(client, at);
        }
        assert_eq!(throttle.tracked(), 100);
        let at = t0 + Duration::from_millis(1000);
        let newest = IpAddr::V6(Ipv6Addr::from(1000u128 << 64));
        let evicted = IpAddr::V6(Ipv6Addr::from(1u128 << 64));
        assert!(throttle.refused_for(newest, at).is_some());
        assert_eq!(throttle.refused_for(evicted, at), None);
    }

    #[test]
    fn ended_windows_are_purged() {
        let throttle = AuthThrottle::new(5, WINDOW);
        let t0 = Instant::now();
        for last in 0..50 {
            throttle.failed(v4(last), t0);
        }
        assert_eq!(throttle.tracked(), 50);
        throttle.failed(v4(200), t0 + WINDOW);
        assert_eq!(throttle.tracked(), 1);
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(bucket(mapped), v4(1));
    }
}
