//! `invite`, `invites [revoke ID]` and `share-access`: thin clients of `/api/invites` and
//! `/api/shares/{name}/access`.

use anyhow::anyhow;
use clap::Subcommand;
use serde::Serialize;

use super::client::Client;
use super::print_json;
use crate::http::types::{
    AccessRequest, CreateInviteRequest, Entry, InviteCreated, InviteRevoked, InviteView,
    ShareAccess, ShareView,
};
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
    let request = CreateInviteRequest {
        expires_secs,
        uses: options.uses,
        shares: (!options.shares.is_empty()).then(|| options.shares.to_vec()),
    };
    let created: InviteCreated = client.post("/api/invites", &request)?;
    let invite = created.invite;
    let code = invite
        .code
        .clone()
        .ok_or_else(|| anyhow!("the daemon gave no invite code"))?;
    if options.json {
        return print_json(&invite);
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
        uses_text(&invite),
        shares_text(invite.shares.as_deref())
    );
    Ok(())
}

fn uses_text(invite: &InviteView) -> String {
    let expires = invite.expires_at;
    let when = i64::try_from(expires)
        .ok()
        .and_then(LocalTime::at)
        .map_or_else(|| expires.to_string(), |t| t.to_string());
    format!("Valid until {when} for {} use(s)", invite.uses_left)
}

fn shares_text(shares: Option<&[String]>) -> String {
    match shares {
        Some(names) => format!("the joiner sees only: {}", names.join(", ")),
        None => "the joiner sees what every friend sees".into(),
    }
}

pub fn invites(client: &Client, action: Option<&InvitesAction>, json: bool) -> anyhow::Result<()> {
    if let Some(InvitesAction::Revoke { id }) = action {
        client.delete::<InviteRevoked>(&format!("/api/invites/{id}"))?;
        println!("revoked invite {id}");
        return Ok(());
    }
    let list: Vec<InviteView> = client.get("/api/invites")?;
    if json {
        return print_json(&list);
    }
    for invite in &list {
        println!(
            "{}  {}; {}",
            invite.id,
            uses_text(invite),
            shares_text(invite.shares.as_deref())
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
        let shares: Vec<ShareView> = client.get("/api/shares")?;
        let found = shares
            .iter()
            .find(|s| s.name == share)
            .ok_or_else(|| anyhow!("no share named {share}"))?;
        return print_json(&found.visible_to);
    }
    let request = AccessRequest {
        all_friends,
        peers: peers.to_vec(),
    };
    let access: ShareAccess = client.post(&format!("/api/shares/{share}/access"), &request)?;
    println!("{share}: {}", describe_access(&access));
    Ok(())
}

fn describe_access(access: &ShareAccess) -> String {
    let peers = access.peers.join(", ");
    match (access.all_friends, access.peers.is_empty()) {
        (true, true) => "visible to all friends".into(),
        (true, false) => format!("visible to all friends and the guests {peers}"),
        (false, _) => format!("visible only to {peers}"),
    }
}

/// A top-level entry of `shares --json`: a share's own entry, with who sees the share and
/// whether its directory is there (absent for an entry that is not a share).
#[derive(Serialize)]
pub struct ShareEntry<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    #[serde(skip_serializing_if = "Option::is_none")]
    visible_to: Option<ShareAccess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<bool>,
}

/// The top-level entries of a `shares` listing (the entries of the shares themselves) with
/// each share's `visible_to` and `available`, so `shares --json` shows who sees what.
pub fn annotate_shares<'a>(
    client: &Client,
    entries: &'a [Entry],
) -> anyhow::Result<Vec<ShareEntry<'a>>> {
    let shares: Vec<ShareView> = client.get("/api/shares")?;
    Ok(entries
        .iter()
        .map(|entry| {
            let share = shares.iter().find(|s| s.name == entry.path);
            ShareEntry {
                entry,
                visible_to: share.map(|s| s.visible_to.clone()),
                available: share.map(|s| s.available),
            }
        })
        .collect())
}
