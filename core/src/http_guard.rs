//! The HTTP access rules that need no state beyond their own: which Host and Origin
//! headers name this node (against DNS rebinding and cross-site requests), the sliding-window
//! attempt limiter for passwords and setup codes, and constant-time comparison.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Password and setup-code attempts allowed per client address in `ATTEMPT_WINDOW`.
pub const MAX_ATTEMPTS_PER_CLIENT: usize = 5;
/// Client addresses whose attempts are remembered; beyond it the one idle longest is
/// forgotten, so memory stays bounded however many addresses try.
pub const MAX_TRACKED_CLIENTS: usize = 4096;
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);

/// Domains home routers and mDNS give a machine's name. None of them can be registered on
/// the public internet, so a DNS-rebinding page can never be served under one.
pub const HOME_NETWORK_DOMAINS: [&str; 6] = [
    "local",
    "lan",
    "home.arpa",
    "home",
    "localdomain",
    "internal",
];

/// The DNS search domains in a resolv.conf (`search` and `domain` lines), where a router
/// that names its DHCP clients usually puts its domain.
pub fn search_domains(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("search" | "domain") => Some(words),
                _ => None,
            }
        })
        .flatten()
        .map(normalise_host)
        .filter(|d| !d.is_empty() && d.contains(|c: char| c.is_ascii_alphanumeric()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("missing Host header")]
    MissingHost,
    #[error("host {0} is not allowed: add it with `start --allowed-host {0}`")]
    HostNotAllowed(String),
    #[error("origin {0} is not allowed")]
    OriginNotAllowed(String),
}

/// Equal-length contents compared in constant time; the length is not secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Host names the UI may be reached by. IP literals are always accepted: a DNS-rebinding
/// page runs under the attacker's host name, never under the daemon's own IP address.
#[derive(Debug, Clone)]
pub struct AllowedHosts(HashSet<String>);

impl AllowedHosts {
    /// `hostname`: the machine's own name, if it has one; `search_domains`: the DNS
    /// search domains its network gave it (`search_domains` reads them).
    pub fn new(
        listen: SocketAddr,
        hostname: Option<&str>,
        search_domains: &[String],
        extra: &[String],
    ) -> Self {
        let mut names: HashSet<String> = ["localhost".to_string(), "127.0.0.1".to_string()]
            .into_iter()
            .collect();
        names.insert(listen.ip().to_string());
        if let Some(host) = hostname.map(normalise_host).filter(|h| !h.is_empty()) {
            let domains = HOME_NETWORK_DOMAINS
                .iter()
                .map(|d| d.to_string())
                .chain(search_domains.iter().map(|d| normalise_host(d)))
                .filter(|d| !d.is_empty());
            for domain in domains {
                names.insert(format!("{host}.{domain}"));
            }
            names.insert(host);
        }
        for name in extra {
            let name = normalise_host(name);
            if !name.is_empty() {
                names.insert(name);
            }
        }
        Self(names)
    }

    /// `host` is a Host header value or the authority of an Origin: `name`, `name:port`,
    /// `[v6]:port`.
    pub fn allows(&self, host: &str) -> bool {
        let name = normalise_host(strip_port(host));
        name.parse::<IpAddr>().is_ok() || self.0.contains(&name)
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().cloned().collect();
        v.sort();
        v
    }

    /// Checks the Host header and, when present, the Origin header. An Origin passes when
    /// it is the very authority the request was sent to (a page this UI served), or a name
    /// on the list; an IP address alone is not enough there, since a page served from any
    /// other address (another device, another port of this one) has an IP origin too.
    pub fn check(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), HostError> {
        let host = host.ok_or(HostError::MissingHost)?;
        if !self.allows(host) {
            return Err(HostError::HostNotAllowed(strip_port(host).to_string()));
        }
        if let Some(origin) = origin {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .filter(|a| !a.is_empty() && !a.contains('/'));
            let same_origin = |a: &str| a.eq_ignore_ascii_case(host.trim());
            let listed_name = |a: &str| {
                let name = normalise_host(strip_port(a));
                name.parse::<IpAddr>().is_err() && self.0.contains(&name)
            };
            match authority {
                Some(a) if same_origin(a) || listed_name(a) => {}
                _ => return Err(HostError::OriginNotAllowed(origin.to_string())),
            }
        }
        Ok(())
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // One colon: name:port. More than one without brackets: a bare IPv6 literal.
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

pub fn normalise_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// How many attempts a sliding window allows, per client address and from all together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub window: Duration,
    pub per_client: usize,
    pub total: usize,
}

/// The limits for passwords and setup codes: per address only. A total would let anyone
/// with a few addresses lock the owner out; the total cost is bounded instead where it is
/// paid (two argon2 runs at a time, behind the HTTP connection cap), and a wrong setup code
/// costs no hashing at all.
pub const PASSWORD_ATTEMPTS: AttemptLimits = AttemptLimits {
    window: ATTEMPT_WINDOW,
    per_client: MAX_ATTEMPTS_PER_CLIENT,
    total: usize::MAX,
};

/// Sliding-window count of attempts (passwords, setup codes, strangers knocking), per
/// client and in total. Its memory is bounded by `MAX_TRACKED_CLIENTS` clients of at most
/// `limits.per_client` entries each.
pub struct AttemptLimiter {
    limits: AttemptLimits,
    per_client: HashMap<IpAddr, VecDeque<Instant>>,
    total: VecDeque<Instant>,
}

impl Default for AttemptLimiter {
    fn default() -> Self {
        Self::new(PASSWORD_ATTEMPTS)
    }
}

impl AttemptLimiter {
    pub fn new(limits: AttemptLimits) -> Self {
        Self {
            limits,
            per_client: HashMap::new(),
            total: VecDeque::new(),
        }
    }

    fn prune(queue: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while queue
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            queue.pop_front();
        }
    }

    /// Records an attempt, or refuses it with the seconds until one is allowed again.
    pub fn attempt(&mut self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let window = self.limits.window;
        Self::prune(&mut self.total, now, window);
        self.per_client.retain(|_, q| {
            Self::prune(q, now, window);
            !q.is_empty()
        });
        let wait = |q: &VecDeque<Instant>| {
            q.front().map_or(1, |t| {
                window
                    .saturating_sub(now.duration_since(*t))
                    .as_secs()
                    .max(1)
            })
        };
        if self.total.len() >= self.limits.total {
            return Err(wait(&self.total));
        }
        if self.per_client.len() >= MAX_TRACKED_CLIENTS && !self.per_client.contains_key(&client) {
            let idlest = self
                .per_client
                .iter()
                .min_by_key(|(_, q)| q.back().copied())
                .map(|(ip, _)| *ip);
            if let Some(ip) = idlest {
                self.per_client.remove(&ip);
            }
        }
        let queue = self.per_client.entry(client).or_default();
        if queue.len() >= self.limits.per_client {
            return Err(wait(queue));
        }
        queue.push_back(now);
        self.total.push_back(now);
        Ok(())
    }

    /// A right password forgets the client's earlier failures.
    pub fn succeeded(&mut self, client: IpAddr) {
        self.per_client.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        let hosts = AllowedHosts::new(
            "0.0.0.0:3030".parse().unwrap(),
            Some("Box\n"),
            &search_domains("nameserver 192.168.1.1\nsearch fritz.box Corp.Example.\n"),
            &["NAS.example.".to_string()],
        );
        for name in [
            "box",
            "box.local",
            "box.lan:3030",
            "box.home.arpa",
            "box.fritz.box",
            "box.corp.example",
        ] {
            assert!(hosts.allows(name), "{name}");
        }
        assert!(!hosts.allows("box.evil.example"));
        assert!(!hosts.allows("other.lan"));
        for ok in [
            "localhost:3030",
            "127.0.0.1:3030",
            "192.168.1.7:3030",
            "[::1]:3030",
            "nas.example",
            "NAS.EXAMPLE:80",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in ["evil.example:3030", "localhost.evil.example", ""] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        assert!(hosts.check(Some("localhost:1"), None).is_ok());
        assert!(hosts
            .check(Some("localhost:1"), Some("http://localhost:1"))
            .is_ok());
        assert!(hosts
            .check(Some("localhost:1"), Some("http://evil.example"))
            .is_err());
        assert!(hosts.check(Some("localhost:1"), Some("null")).is_err());
        // A page from another address (or another port of this one) is another origin,
        // whatever its Host: an IP origin passes only as the request's own authority.
        let ours = "192.168.1.7:3030";
        assert!(hosts
            .check(Some(ours), Some("http://192.168.1.7:3030"))
            .is_ok());
        assert!(hosts
            .check(Some(ours), Some("http://192.168.1.66"))
            .is_err());
        assert!(hosts
            .check(Some(ours), Some("http://192.168.1.7:8080"))
            .is_err());
        assert!(hosts.check(Some(ours), Some("http://[::1]:3030")).is_err());
        // A listed name may front the UI (a reverse proxy that rewrites Host).
        assert!(hosts.check(Some(ours), Some("https://nas.example")).is_ok());
        assert!(hosts.check(None, None).is_err());
    }

    #[test]
    fn limiter_refuses_the_sixth_attempt_in_a_minute() {
        let mut limiter = AttemptLimiter::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_ATTEMPTS_PER_CLIENT {
            assert!(limiter
                .attempt(ip, t0 + Duration::from_secs(i as u64))
                .is_ok());
        }
        let wait = limiter
            .attempt(ip, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.attempt(other, t0 + Duration::from_secs(10)).is_ok());
        assert!(limiter.attempt(ip, t0 + ATTEMPT_WINDOW).is_ok());
        limiter.succeeded(ip);
        assert!(!limiter.per_client.contains_key(&ip));
    }

    #[test]
    fn many_addresses_cannot_lock_out_another() {
        let mut limiter = AttemptLimiter::default();
        let t0 = Instant::now();
        for n in 0..=MAX_TRACKED_CLIENTS as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            for _ in 0..MAX_ATTEMPTS_PER_CLIENT {
                assert!(limiter.attempt(ip, t0).is_ok());
            }
            assert!(limiter.attempt(ip, t0).is_err());
        }
        let owner: IpAddr = "192.168.1.20".parse().unwrap();
        assert!(limiter.attempt(owner, t0 + Duration::from_secs(1)).is_ok());
        assert!(limiter.per_client.len() <= MAX_TRACKED_CLIENTS);
        // A total, where one is set (strangers knocking), still holds.
        let mut strangers = AttemptLimiter::new(AttemptLimits {
            window: ATTEMPT_WINDOW,
            per_client: 5,
            total: 3,
        });
        for n in 0..3u8 {
            assert!(strangers.attempt(IpAddr::from([10, 0, 0, n]), t0).is_ok());
        }
        assert!(strangers.attempt(owner, t0).is_err());
    }
}
