//! `invite`, `invites [revoke ID]` and `share-access`: thin clients of `/api/invites` and
//! `/api/shares/{name}/access`.

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{json, Value};

use super::client::Client;
use super::print_json;
use crate::local_time::LocalTime;

#[derive(Subcommand, Debug)]
pub enum InvitesAction {
    /// End a live invite: whoever holds its code is told it was revoked.
    Revoke { id: String },
}

/// The options of `invite`, as given.
pub struct InviteOptions<'a> {
    pub expires: Option<&'a str>,
    pub uses: Option<u32>,
    pub shares: &'a [String],
    pub json: bool,
}

/// Makes an invite and prints its code and a QR code a phone can photograph.
pub fn invite(client: &Client, options: InviteOptions<'_>) -> anyhow::Result<()> {
    let expires_secs = options
        .expires
        .map(harddrive_party_core::invite::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("--expires {e}"))?;
    let mut reply = client.post(
        "/api/invites",
        json!({
            "expires_secs": expires_secs,
            "uses": options.uses,
            "shares": (!options.shares.is_empty()).then_some(options.shares),
        }),
    )?;
    let code = reply["code"]
        .as_str()
        .ok_or_else(|| anyhow!("the daemon gave no invite code"))?
        .to_string();
    if options.json {
        if let Some(fields) = reply.as_object_mut() {
            fields.remove("qr_svg");
        }
        return print_json(&reply);
    }
    let image = qrcode::QrCode::with_error_correction_level(code.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| anyhow!("QR code: {e}"))?
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build();
    println!("{image}\n");
    println!("{code}\n");
    println!(
        "Give this code to your friend: they paste it into Connect (web UI) or run\n  harddrive-party connect {code}\n{}, {}.",
        uses_text(&reply),
        shares_text(&reply["shares"])
    );
    Ok(())
}

fn uses_text(invite: &Value) -> String {
    let expires = invite["expires_at"].as_u64().unwrap_or(0);
    let when = i64::try_from(expires)
        .ok()
        .and_then(LocalTime::at)
        .map_or_else(|| expires.to_string(), |t| t.to_string());
    format!(
        "Valid until {when} for {} use(s)",
        invite["uses_left"].as_u64().unwrap_or(0)
    )
}

fn shares_text(shares: &Value) -> String {
    match shares.as_array() {
        Some(names) => format!(
            "the joiner sees only: {}",
            names
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "the joiner sees what every friend sees".into(),
    }
}

pub fn invites(client: &Client, action: Option<&InvitesAction>, json: bool) -> anyhow::Result<()> {
    if let Some(InvitesAction::Revoke { id }) = action {
        client.delete(&format!("/api/invites/{id}"))?;
        println!("revoked invite {id}");
        return Ok(());
    }
    let list = client.get_json("/api/invites", &[])?;
    if json {
        return print_json(&list);
    }
    for invite in list.as_array().into_iter().flatten() {
        println!(
            "{}  {}; {}",
            invite["id"].as_str().unwrap_or(""),
            uses_text(invite),
            shares_text(&invite["shares"])
        );
    }
    Ok(())
}

pub fn share_access(
    client: &Client,
    share: &str,
    all_friends: bool,
    peers: &[String],
) -> anyhow::Result<()> {
    if !all_friends && peers.is_empty() {
        let shares = client.get_json("/api/shares", &[])?;
        let found = shares
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == share)
            .ok_or_else(|| anyhow!("no share named {share}"))?;
        return print_json(&found["visible_to"]);
    }
    let access = client.post(
        &format!("/api/shares/{share}/access"),
        json!({ "all_friends": all_friends, "peers": peers }),
    )?;
    println!("{share}: {}", describe_access(&access));
    Ok(())
}

fn describe_access(access: &Value) -> String {
    let peers: Vec<&str> = access["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match (
        access["all_friends"].as_bool().unwrap_or(true),
        peers.is_empty(),
    ) {
        (true, true) => "visible to all friends".into(),
        (true, false) => format!("visible to all friends and the guests {}", peers.join(", ")),
        (false, _) => format!("visible only to {}", peers.join(", ")),
    }
}

/// Adds each share's `visible_to` to the top-level entries of a `shares` listing (the
/// entries of the shares themselves), so `shares --json` shows who sees what.
pub fn annotate_shares(client: &Client, entries: &mut Value) -> anyhow::Result<()> {
    let shares = client.get_json("/api/shares", &[])?;
    for entry in entries.as_array_mut().into_iter().flatten() {
        let path = entry["path"].as_str().unwrap_or_default().to_string();
        if let Some(share) = shares
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == path.as_str())
        {
            entry["visible_to"] = share["visible_to"].clone();
            entry["available"] = share["available"].clone();
        }
    }
    Ok(())
}
