//! What the client commands print: listings, peers, transfers, info, JSON.

use anyhow::{anyhow, bail};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::{invites, ListArgs};
use crate::http::types::{Entry, ErrorBody, Info, ListQuery, PeerRequest, PeerView, TransferView};

pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// An enum's name as the API spells it (`disk_full`, `upload`), for the lines we print.
pub(super) fn wire_name(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .map(|quoted| quoted.trim_matches('"').to_string())
        .unwrap_or_default()
}

pub(super) fn print_entries(entries: &[Entry]) {
    for e in entries {
        println!(
            "{:>10}  {}{}",
            human_bytes(e.size),
            e.path,
            if e.is_dir { "/" } else { "" }
        );
    }
}

pub(super) fn list_query(args: &ListArgs) -> ListQuery {
    ListQuery {
        path: args.path.clone().unwrap_or_default(),
        searchterm: args.searchterm.clone(),
        recursive: Some(args.recursive),
    }
}

pub(super) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) fn print_info(client: &Client, json: bool) -> anyhow::Result<()> {
    let info: Info = client.get("/api/info")?;
    if json {
        return print_json(&info);
    }
    println!("name: {}", info.name);
    println!("announce address: {}", info.announce_address);
    println!(
        "listening on: {}",
        info.listen_address.as_deref().unwrap_or("")
    );
    Ok(())
}

/// `approve`, `block`, `unblock` or `forget` (`action`), answered with `Reply`.
pub(super) fn trust_action<Reply: serde::de::DeserializeOwned>(
    client: &Client,
    action: &str,
    peer: &str,
    done: &str,
) -> anyhow::Result<()> {
    let body = PeerRequest {
        peer: peer.to_string(),
    };
    client.post::<_, Reply>(&format!("/api/peers/{action}"), &body)?;
    println!("{done} {peer}");
    Ok(())
}

pub(super) fn print_peers(client: &Client, json: bool) -> anyhow::Result<()> {
    let peers: Vec<PeerView> = client.get("/api/peers")?;
    if json {
        return print_json(&peers);
    }
    for p in &peers {
        let state = if p.connected { "connected" } else { "offline" };
        let nickname = p
            .nickname
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!(
            "{}{}  {}  {}  {}",
            p.name,
            nickname,
            p.trust,
            state,
            p.remote_address.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub(super) fn print_listing(
    client: &Client,
    endpoint: &str,
    args: &ListArgs,
) -> anyhow::Result<()> {
    let (_, _, body) = client.get_raw(endpoint, &list_query(args))?.split();
    let mut answer = serde_json::Deserializer::from_reader(body);
    let entries = Vec::<Entry>::deserialize(&mut answer)
        .map_err(|e| anyhow!("unexpected listing from the daemon: {e}"))?;
    // A listing cut short ends with an error object after the array.
    let trailer = answer.end().is_err().then(|| {
        ErrorBody::deserialize(&mut answer)
            .map_or_else(|_| "unknown error".to_string(), |t| t.error)
    });
    let share_roots =
        endpoint == "/api/index" && args.path.as_deref().unwrap_or_default().is_empty();
    if args.json && share_roots {
        println!(
            "{}",
            serde_json::to_string(&invites::annotate_shares(client, &entries)?)?
        );
    } else if args.json {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        print_entries(&entries);
    }
    if let Some(error) = trailer {
        bail!("listing incomplete: {error}");
    }
    Ok(())
}

/// Why a transfer is not moving: the offline peer it waits for, else its latest error.
fn transfer_note(t: &TransferView) -> String {
    if let Some(peer) = &t.waiting_for {
        return format!("  (waiting for {peer} (offline))");
    }
    t.error
        .as_ref()
        .map(|e| format!("  ({e})"))
        .unwrap_or_default()
}

pub(super) fn print_transfers(client: &Client, json: bool) -> anyhow::Result<()> {
    let list: Vec<TransferView> = client.get("/api/transfers")?;
    if json {
        return print_json(&list);
    }
    for t in &list {
        println!(
            "{} {:8} {:9} {}/{}  {} / {}{}",
            t.id,
            wire_name(&t.direction),
            wire_name(&t.state),
            t.peer,
            t.path,
            human_bytes(t.received),
            human_bytes(t.size),
            transfer_note(t)
        );
    }
    Ok(())
}
