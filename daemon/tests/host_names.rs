//! The names a home network gives this machine reach the web UI (`NAME.lan`,
//! `NAME.home.arpa`, `NAME.local`, plain `NAME`); a name it does not know gets a page a
//! person can read, naming the fix, and scripts still get JSON.

mod common;

use common::*;

fn get(d: &Daemon, host: &str, accept: &str) -> (u16, String, String) {
    let answer = ureq::get(&format!("{}/", d.ui))
        .set("Host", host)
        .set("Accept", accept)
        .call();
    let response = match answer {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{host}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("content-type").unwrap_or("").to_string();
    (
        status,
        content_type,
        response.into_string().unwrap_or_default(),
    )
}

#[test]
fn home_network_names_are_accepted_and_others_get_a_readable_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let port = a.ui.rsplit(':').next().unwrap().to_string();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    for name in [
        hostname.clone(),
        format!("{hostname}.lan"),
        format!("{hostname}.home.arpa"),
        format!("{hostname}.local"),
    ] {
        let (status, _, _) = get(&a, &format!("{name}:{port}"), "text/html");
        assert_eq!(status, 200, "{name}");
    }

    let (status, content_type, page) = get(&a, &format!("evil<b>.example:{port}"), "text/html,*/*");
    assert_eq!(status, 403);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("evil&lt;b&gt;.example"), "escaped: {page}");
    assert!(!page.contains("evil<b>"), "never echoed raw: {page}");
    assert!(
        page.contains("allowed_hosts") && page.contains("--allowed-host"),
        "{page}"
    );

    let (status, content_type, body) = get(&a, "other.lan", "application/json");
    assert_eq!(status, 403);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(body.contains("\"error\""), "{body}");
}
