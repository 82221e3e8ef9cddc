//! The NAT lab: a simulated internet made of network namespaces, all created by the test and
//! deleted when the `Lab` drops (even on panic).
//!
//! - "inet": a bridge with the STUN/TURN server on 203.0.113.1 and .2 (coturn), no routes out.
//! - one router namespace per site, WAN 203.0.113.(10+n) on the bridge, LAN 10.0.n.0/24,
//!   with a selectable NAT made of nftables rules; each drops unsolicited NEW packets on
//!   its WAN, as home routers do;
//! - one host namespace per site behind its router (or straight on the bridge: `Public`).
//!
//! The root namespace is never connected: veth ends are created inside lab namespaces.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{wait_for, Daemon, Netns};

pub const STUN_A: &str = "203.0.113.1:3478";
pub const STUN_B: &str = "203.0.113.2:3478";
pub const TURN_USER: &str = "hdp";
pub const TURN_PASSWORD: &str = "lab-relay-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    Public,
    FullCone,
    AddressRestricted,
    PortRestricted,
    Symmetric,
}

impl Nat {
    pub const ALL: [Nat; 5] = [
        Nat::Public,
        Nat::FullCone,
        Nat::AddressRestricted,
        Nat::PortRestricted,
        Nat::Symmetric,
    ];

    /// What the daemon's STUN classification must report behind this NAT.
    pub fn expected_class(self) -> &'static str {
        match self {
            Nat::Public => "none",
            Nat::Symmetric => "symmetric",
            _ => "cone",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Nat::Public => "public",
            Nat::FullCone => "full-cone",
            Nat::AddressRestricted => "addr-restr",
            Nat::PortRestricted => "port-restr",
            Nat::Symmetric => "symmetric",
        }
    }
}

pub struct Site {
    pub nat: Nat,
    pub host: Netns,
    pub router: Option<Netns>,
    pub host_ip: String,
}

impl Site {
    /// A daemon on this site's host, listening on its address and asking the lab's STUN
    /// servers (natlab and portmap alike).
    pub fn daemon(&self, root: &std::path::Path, label: &str) -> Daemon {
        Daemon::new(root, label)
            .in_netns(&self.host, &format!("{}:0", self.host_ip))
            .args(&["--stun-server", STUN_A, "--stun-server", STUN_B])
    }

    /// Forgets every NAT mapping, so one test case cannot help the next.
    pub fn flush_conntrack(&self) {
        if let Some(router) = &self.router {
            let _ = Command::new("ip")
                .args(["netns", "exec", &router.name, "conntrack", "-F"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The ISP hands the router a new public address: every mapping changes.
    pub fn change_public_ip(&self, ip: &str) {
        let router = self.router.as_ref().expect("a NATed site");
        router.exec(&["ip", "addr", "flush", "dev", "wan"]);
        router.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "wan"]);
        self.flush_conntrack();
    }

    /// Shortens the router's UDP conntrack timeouts (keep-alive tests).
    pub fn set_udp_timeouts(&self, unreplied: u32, replied: u32) {
        if let Some(router) = &self.router {
            router.exec(&[
                "sysctl",
                "-q",
                &format!("net.netfilter.nf_conntrack_udp_timeout={unreplied}"),
            ]);
            router.exec(&[
                "sysctl",
                "-q",
                &format!("net.netfilter.nf_conntrack_udp_timeout_stream={replied}"),
            ]);
        }
    }
}

pub struct Lab {
    pub inet: Netns,
    server: Option<Child>,
    tag: u32,
    sites: usize,
}

fn short(prefix: &str, tag: u32, n: usize) -> String {
    // Interface names are limited to 15 bytes.
    format!("{prefix}{}{n}", tag % 10_000)
}

impl Lab {
    /// The internet namespace with its bridge and both server addresses.
    pub fn new(tag: &str) -> Self {
        let inet = Netns::new(&format!("{tag}-inet"));
        inet.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        inet.exec(&["ip", "link", "set", "br0", "up"]);
        for ip in ["203.0.113.1/24", "203.0.113.2/24"] {
            inet.exec(&["ip", "addr", "add", ip, "dev", "br0"]);
        }
        Self {
            inet,
            server: None,
            tag: std::process::id(),
            sites: 0,
        }
    }

    /// coturn on both addresses: STUN only, or also a TURN relay with one long-term user.
    pub fn start_coturn(&mut self, dir: &std::path::Path, relay: bool) {
        self.start_coturn_with(dir, relay, &[]);
    }

    /// STUN only, answering RFC 5780 change requests (from the other address and port), as
    /// miniupnpd needs to find its WAN unfiltered. Debian's /etc/turnserver.conf switches
    /// that off (`no-rfc5780`), so this server reads an empty config file instead.
    pub fn start_coturn_rfc5780(&mut self, dir: &std::path::Path) {
        let empty = dir.join("turnserver-rfc5780.conf");
        std::fs::write(&empty, "").unwrap();
        self.start_coturn_with(dir, false, &["-c".into(), empty.display().to_string()]);
    }

    fn start_coturn_with(&mut self, dir: &std::path::Path, relay: bool, extra: &[String]) {
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.inet.name.clone(),
            "turnserver".into(),
            "--listening-ip=203.0.113.1".into(),
            "--listening-ip=203.0.113.2".into(),
            "--listening-port=3478".into(),
            "--alt-listening-port=3479".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--no-cli".into(),
            "--log-file=stdout".into(),
            "--simple-log".into(),
            format!("--pidfile={}", dir.join("turnserver.pid").display()),
            format!("--userdb={}", dir.join("turndb").display()),
        ];
        if relay {
            args.extend([
                "--lt-cred-mech".to_string(),
                format!("--user={TURN_USER}:{TURN_PASSWORD}"),
                "--realm=lab.example".into(),
                "--relay-ip=203.0.113.1".into(),
                "--min-port=49152".into(),
                "--max-port=49999".into(),
                // The lab's "public" addresses are TEST-NET; let the relay talk to them.
                "--allowed-peer-ip=203.0.113.0-203.0.113.255".into(),
            ]);
        } else {
            args.push("--stun-only".into());
        }
        args.extend_from_slice(extra);
        let log = std::fs::File::create(dir.join("coturn.log")).unwrap();
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start coturn");
        self.server = Some(child);
        let inet = self.inet.name.clone();
        wait_for("coturn to listen", Duration::from_secs(10), || {
            let out = Command::new("ip")
                .args(["netns", "exec", &inet, "ss", "-uln"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            (text.contains("203.0.113.1:3478") && text.contains("203.0.113.2:3478")).then_some(())
        });
    }

    pub fn stop_coturn(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A host behind a router with `nat` (or on the bridge itself for `Public`).
    pub fn site(&mut self, label: &str, nat: Nat) -> Site {
        self.sites += 1;
        let n = self.sites;
        let tag = self.tag;
        let host = Netns::new(&format!("{label}-h"));
        let wan_ip = format!("203.0.113.{}", 10 + n);
        if nat == Nat::Public {
            self.plug_into_bridge(&host, &short("pw", tag, n), &short("pb", tag, n), &wan_ip);
            return Site {
                nat,
                host,
                router: None,
                host_ip: wan_ip,
            };
        }
        let router = Netns::new(&format!("{label}-r"));
        router.exec(&["sysctl", "-q", "net.ipv4.ip_forward=1"]);
        self.plug_into_bridge(&router, "wan", &short("rb", tag, n), &wan_ip);
        let lan_ip = format!("10.0.{n}.1");
        let host_ip = format!("10.0.{n}.2");
        router.exec(&[
            "ip", "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", &host.name,
        ]);
        router.exec(&["ip", "addr", "add", &format!("{lan_ip}/24"), "dev", "lan"]);
        router.exec(&["ip", "link", "set", "lan", "up"]);
        host.exec(&["ip", "addr", "add", &format!("{host_ip}/24"), "dev", "eth0"]);
        host.exec(&["ip", "link", "set", "eth0", "up"]);
        host.exec(&["ip", "route", "add", "default", "via", &lan_ip]);
        let rules = nat_rules(nat, &host_ip);
        // Named after the router's namespace, which is unique: tests of one binary run in
        // parallel in one process, so a name from the process ID alone was shared.
        let file = std::env::temp_dir().join(format!("{}.nft", router.name));
        std::fs::write(&file, rules).unwrap();
        router.exec(&["nft", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(&file);
        Site {
            nat,
            host,
            router: Some(router),
            host_ip,
        }
    }

    /// A veth from `ns` (named `inner`, holding `ip`) to the internet bridge.
    fn plug_into_bridge(&self, ns: &Netns, inner: &str, outer: &str, ip: &str) {
        ns.exec(&[
            "ip",
            "link",
            "add",
            inner,
            "type",
            "veth",
            "peer",
            "name",
            outer,
            "netns",
            &self.inet.name,
        ]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", inner]);
        ns.exec(&["ip", "link", "set", inner, "up"]);
        self.inet
            .exec(&["ip", "link", "set", outer, "master", "br0"]);
        self.inet.exec(&["ip", "link", "set", outer, "up"]);
    }
}

/// A long-running process inside a lab namespace, with its output in `log`; the caller
/// stops it by its PID.
pub fn spawn_in(ns: &Netns, args: &[&str], log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_coturn();
    }
}

/// nftables rules for one router. Mapping is endpoint-independent with the port kept
/// (plain masquerade) except for `Symmetric` (a random port per destination); filtering
/// is added back for full cone (any source) and address-restricted (contacted IPs) with
/// dynamic sets and DNAT; everything else unsolicited on the WAN is dropped, also on the
/// router's own input: a probe that arrives before the host's first packet out must not
/// leave a conntrack entry that would push the host's mapping to another port.
fn nat_rules(nat: Nat, host_ip: &str) -> String {
    let masquerade = if nat == Nat::Symmetric {
        "masquerade fully-random"
    } else {
        "masquerade"
    };
    let (sets, learn, admit) = match nat {
        Nat::FullCone => (
            "set opened { type inet_service; flags dynamic,timeout; timeout 5m; }",
            "iifname \"lan\" meta l4proto udp add @opened { udp sport }",
            format!("iifname \"wan\" udp dport @opened dnat to {host_ip}"),
        ),
        Nat::AddressRestricted => (
            "set opened { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 5m; }",
            "iifname \"lan\" meta l4proto udp add @opened { ip daddr . udp sport }",
            format!("iifname \"wan\" ip saddr . udp dport @opened dnat to {host_ip}"),
        ),
        _ => ("", "", String::new()),
    };
    format!(
        "table ip lab {{
  {sets}
  chain prerouting {{
    type nat hook prerouting priority -100;
    {admit}
  }}
  chain postrouting {{
    type nat hook postrouting priority 100;
    oifname \"wan\" {masquerade}
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"wan\" ct state new drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    {learn}
    iifname \"wan\" ct state new ct status dnat accept
    iifname \"wan\" ct state new drop
  }}
}}
"
    )
}
