//! What the client commands print: listings, peers, transfers, info, JSON.

use anyhow::{anyhow, bail};
use serde_json::{json, Value};

use super::client::Client;
use super::{invites, ListArgs};

/// An error and its causes on one line, each cause once: most of our errors already show
/// their source (`{path}: {source}`), so `{:#}` would print the OS error twice.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}

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

pub(super) fn print_entries(entries: &Value) {
    for e in entries.as_array().into_iter().flatten() {
        let dir = e["is_dir"].as_bool().unwrap_or(false);
        let path = e["path"].as_str().unwrap_or("");
        println!(
            "{:>10}  {}{}",
            human_bytes(e["size"].as_u64().unwrap_or(0)),
            path,
            if dir { "/" } else { "" }
        );
    }
}

pub(super) fn list_query(args: &ListArgs) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("path", args.path.clone().unwrap_or_default()),
        ("recursive", args.recursive.to_string()),
    ];
    if let Some(term) = &args.searchterm {
        q.push(("searchterm", term.clone()));
    }
    q
}

pub(super) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) fn print_info(client: &Client, json: bool) -> anyhow::Result<()> {
    let info = client.get_json("/api/info", &[])?;
    if json {
        return print_json(&info);
    }
    let field = |name: &str| info[name].as_str().unwrap_or("").to_string();
    println!("name: {}", field("name"));
    println!("announce address: {}", field("announce_address"));
    println!("listening on: {}", field("listen_address"));
    Ok(())
}

pub(super) fn trust_action(
    client: &Client,
    action: &str,
    peer: &str,
    done: &str,
) -> anyhow::Result<()> {
    client.post(&format!("/api/peers/{action}"), json!({ "peer": peer }))?;
    println!("{done} {peer}");
    Ok(())
}

pub(super) fn print_peers(client: &Client, json: bool) -> anyhow::Result<()> {
    let peers = client.get_json("/api/peers", &[])?;
    if json {
        return print_json(&peers);
    }
    for p in peers.as_array().into_iter().flatten() {
        let state = if p["connected"].as_bool().unwrap_or(false) {
            "connected"
        } else {
            "offline"
        };
        let nickname = p["nickname"]
            .as_str()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!(
            "{}{}  {}  {}  {}",
            p["name"].as_str().unwrap_or(""),
            nickname,
            p["trust"].as_str().unwrap_or("-"),
            state,
            p["remote_address"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}

pub(super) fn print_listing(
    client: &Client,
    endpoint: &str,
    args: &ListArgs,
) -> anyhow::Result<()> {
    let (_, _, body) = client.get(endpoint, &list_query(args))?.split();
    // A listing cut short ends with an error object after the array.
    let mut parts = serde_json::Deserializer::from_reader(body).into_iter::<Value>();
    let mut entries = parts.next().ok_or_else(|| anyhow!("empty answer"))??;
    if endpoint == "/api/index" && args.path.as_deref().unwrap_or_default().is_empty() {
        invites::annotate_shares(client, &mut entries)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&entries)?);
    } else {
        print_entries(&entries);
    }
    if let Some(Ok(trailer)) = parts.next() {
        bail!(
            "listing incomplete: {}",
            trailer["error"].as_str().unwrap_or("unknown error")
        );
    }
    Ok(())
}

/// Why a transfer is not moving: the offline peer it waits for, else its latest error.
fn transfer_note(t: &Value) -> String {
    if let Some(peer) = t["waiting_for"].as_str() {
        return format!("  (waiting for {peer} (offline))");
    }
    t["error"]
        .as_str()
        .map(|e| format!("  ({e})"))
        .unwrap_or_default()
}

pub(super) fn print_transfers(client: &Client, json: bool) -> anyhow::Result<()> {
    let list = client.get_json("/api/transfers", &[])?;
    if json {
        return print_json(&list);
    }
    for t in list.as_array().into_iter().flatten() {
        println!(
            "{:>3} {:8} {:9} {}/{}  {} / {}{}",
            t["id"],
            t["direction"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            t["peer"].as_str().unwrap_or(""),
            t["path"].as_str().unwrap_or(""),
            human_bytes(t["received"].as_u64().unwrap_or(0)),
            human_bytes(t["size"].as_u64().unwrap_or(0)),
            transfer_note(t)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct Shown {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let shown = anyhow::Error::from(Shown {
            path: "/k",
            source: denied(),
        });
        assert_eq!(error_line(&shown), format!("cannot read /k: {}", denied()));
        let hidden = anyhow::Error::from(denied()).context("starting");
        assert_eq!(error_line(&hidden), format!("starting: {}", denied()));
    }
}
