//! Joining with an invite where the inviter would have to dial (issue 12): inviter and
//! joiner each behind a symmetric NAT, both with the lab's TURN relay. The inviter cannot
//! know the joiner's address before the join, so its allocation admits only the relay
//! server's own IP; the joiner dials from its own allocation, relay to relay.

use std::path::Path;
use std::time::{Duration, Instant};

use super::common::*;
use super::lab::{Lab, Nat, Site};
use super::{lab_daemon, wait_classified};
use harddrive_party::announce::{AnnounceAddress, NatType};
use harddrive_party_core::invite::InviteCode;

/// Waits until `d` announces a relayed address (its TURN allocation is up).
fn wait_relayed(d: &Daemon) -> AnnounceAddress {
    wait_for(
        &format!("{} to announce a relayed address", d.label),
        Duration::from_secs(20),
        || {
            let address: AnnounceAddress = d.api_get("/api/info")["announce_address"]
                .as_str()?
                .parse()
                .ok()?;
            address.relay.is_some().then_some(address)
        },
    )
}

/// The inviter at `home` sharing `share`, the joiner `away`, both classified and indexed.
fn start_pair(root: &Path, home: &Site, away: &Site, share: &Path) -> (Daemon, Daemon) {
    let mut inviter = lab_daemon(root, "inviter", home, true).share(share);
    let mut joiner = lab_daemon(root, "joiner", away, true);
    inviter.start();
    joiner.start();
    wait_classified(&inviter, Nat::Symmetric);
    wait_classified(&joiner, Nat::Symmetric);
    wait_indexed(&inviter, 2);
    (inviter, joiner)
}

#[test]
fn a_join_between_two_symmetric_nats_goes_through_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("join");
    lab.start_coturn(tmp.path(), true);
    let share = tmp.path().join("share/Lab");
    write_random_file(&share.join("data.bin"), 1024 * 1024, 12);
    // Both sites live as long as the test: dropping one removes its namespaces.
    let home = lab.site("ji", Nat::Symmetric);
    let away = lab.site("jj", Nat::Symmetric);
    let (inviter, joiner) = start_pair(tmp.path(), &home, &away, &share);
    let (iname, jname) = (inviter.name(), joiner.name());
    let announced = wait_relayed(&inviter);
    wait_relayed(&joiner);

    let code = inviter.cli_json(&["invite", "--json"])["code"]
        .as_str()
        .expect("an invite code")
        .to_string();
    let parsed: InviteCode = code.parse().expect("a readable code");
    assert_eq!(parsed.inviter.nat_type, NatType::Symmetric);
    assert_eq!(
        parsed.inviter.relay, announced.relay,
        "the code carries the relayed address"
    );

    let started = Instant::now();
    let out = joiner.cli(&["connect", &code]);
    assert!(
        out.status.success(),
        "the join failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (at_inviter, at_joiner) = wait_for(
        "both ends to see the connection",
        Duration::from_secs(20),
        || {
            Some((
                inviter.connected_entry(&jname)?,
                joiner.connected_entry(&iname)?,
            ))
        },
    );
    let joined_in = started.elapsed();
    assert_eq!(at_inviter["connection"], "relayed", "{at_inviter}");
    assert_eq!(at_joiner["connection"], "relayed", "{at_joiner}");
    assert_eq!(inviter.peer(&jname).unwrap()["trust"], "friend");
    assert_eq!(joiner.peer(&iname).unwrap()["trust"], "friend");
    let invites = inviter.cli_json(&["invites", "--json"]);
    assert_eq!(
        invites.as_array().map(Vec::len),
        Some(0),
        "the one use is spent: {invites}"
    );

    let id = joiner.download(&format!("{iname}/Lab/data.bin"));
    let done = joiner.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&joiner.download_dir.join(&iname).join("Lab/data.bin")),
        sha256_file(&share.join("data.bin"))
    );
    println!("symmetric <-> symmetric join: relayed in {joined_in:?}");
}
