//! "Friends only" in the web UI (issue 12): three real daemons on loopback and
//! `tests/ui/invites.mjs` driving Debian's Chromium at 390 px wide against A's and B's UIs.
//! A makes an invite and revokes it (B's UI is refused it, saying so, and nothing is
//! remembered) and one that expired (refused as expired), then a second one whose QR code B's UI reads from a photo (jsQR where the
//! browser has no BarcodeDetector) to join; C dials A's address uninvited and shows on A's
//! Peers tab as a request with a badge, approved in one tap and renamed (and shows on B's
//! as a suggestion introduced by A, with B's badge); a share restricted to B in the UI is
//! listed by B and not by C, then opened to all friends again; C is forgotten. axe-core
//! checks each screen. Screenshots land in `target/ui-shots/invites-*.png`.

mod common;

use std::time::Duration;

use common::browser::{assert_screenshots, run_browser_script};
use common::*;

const NODE_TIMEOUT: Duration = Duration::from_secs(240);

#[test]
fn invite_approve_and_restrict_in_the_phone_ui() {
    let tmp = tempfile::tempdir().unwrap();
    let music = tmp.path().join("shares/Music");
    let private = tmp.path().join("shares/Private");
    write_random_file(&music.join("song.flac"), 50_000, 1);
    write_random_file(&private.join("diary-2026.txt"), 20_000, 2);
    let mut a = Daemon::new(tmp.path(), "a").share(&music).share(&private);
    let mut b = Daemon::new(tmp.path(), "b");
    let mut c = Daemon::new(tmp.path(), "c");
    a.start();
    b.start();
    c.start();
    // Asked now: once the script has set a password, the API wants the CLI's token.
    let (an, bn, cn) = (a.name(), b.name(), c.name());

    run_browser_script(
        "invites.mjs",
        &[
            ("HDP_A_URL", a.ui.clone()),
            ("HDP_A_STORAGE", a.storage.display().to_string()),
            ("HDP_B_URL", b.ui.clone()),
            ("HDP_B_STORAGE", b.storage.display().to_string()),
            ("HDP_C_URL", c.ui.clone()),
            ("HDP_C_STORAGE", c.storage.display().to_string()),
        ],
        NODE_TIMEOUT,
        &a,
    );

    // Independently of the script, through the CLI: B joined as a friend, C was forgotten,
    // no invite is left, and B lists the share opened to all friends again.
    let entry = a.peer(&bn).expect("B remembered by A");
    assert_eq!(entry["trust"], "friend", "{entry}");
    // Forgotten; C, still counting A as a friend, may have knocked again since.
    let c_entry = a.peer(&cn);
    assert!(
        c_entry.as_ref().is_none_or(|p| p["trust"] == "pending"),
        "C is no friend of A: {c_entry:?}"
    );
    assert_eq!(a.cli_json(&["invites", "--json"]), serde_json::json!([]));
    let seen = b.top_level(&an);
    assert!(
        seen.contains(&format!("{an}/Private")) && seen.contains(&format!("{an}/Music")),
        "B sees {seen:?}"
    );
    assert_screenshots(&[
        "invites-01-refused",
        "invites-02-invite",
        "invites-03-request",
        "invites-04-peer-menu",
        "invites-05-access",
    ]);
    a.stop();
    b.stop();
    c.stop();
}
