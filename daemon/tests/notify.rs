//! Notifications (`--notify-url`, core `notify`) against an HTTP receiver this test runs on
//! loopback: a finished download is told at once, what follows within 30 s comes as one
//! message (a failure, more downloads, a stranger's friend request), a receiver that never
//! answers holds up no download, an `https://` receiver is reached only with a certificate
//! the system's CA store vouches for, and the setting is checked and changed through the API.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;

/// One POST as received: its `Title` header and its body.
struct Received {
    path: String,
    title: String,
    body: String,
}

/// An HTTP receiver on loopback; answers 200 to each request, or, if `hang`, reads it and
/// never answers. Each request is also sent down the channel. Ends with the test process.
fn receiver(hang: bool) -> (String, mpsc::Receiver<Received>) {
    serve(hang, None)
}

/// A stream a receiver reads a request from and answers on: plain TCP or TLS over it.
trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

fn serve(hang: bool, tls: Option<Arc<rustls::ServerConfig>>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = match tls {
        Some(_) => format!("https://localhost:{port}/harddrive-party"),
        None => format!("http://127.0.0.1:{port}/harddrive-party"),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(100) {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut stream: Box<dyn Connection> = match &tls {
                Some(config) => Box::new(rustls::StreamOwned::new(
                    rustls::ServerConnection::new(config.clone()).unwrap(),
                    stream,
                )),
                None => Box::new(stream),
            };
            let Some(request) = read_request(&mut stream) else {
                continue;
            };
            if tx.send(request).is_err() {
                return;
            }
            if hang {
                held.push(stream);
            } else {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                let _ = stream.flush();
            }
        }
    });
    (url, rx)
}

/// A certificate authority made for one test, written as PEM to `pem` (what
/// `SSL_CERT_FILE` points a daemon at), and the TLS setup of a `localhost` receiver whose
/// certificate it signed.
fn certificate_authority(pem: &Path) -> Arc<rustls::ServerConfig> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "harddrive-party test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(pem, ca.pem()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    Arc::new(config)
}

fn read_request(stream: &mut dyn Connection) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let (mut title, mut length) = (String::new(), 0usize);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "title" => title = value.trim().to_string(),
            "content-length" => length = value.trim().parse().ok()?,
            _ => {}
        }
    }
    let mut body = vec![0; length.min(1 << 16)];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        path,
        title,
        body: String::from_utf8(body).ok()?,
    })
}

#[test]
fn downloads_failures_and_requests_are_told_and_a_storm_is_one_message() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("a-files/Music");
    for i in 0..4 {
        write_random_file(&share.join(format!("track{i}.flac")), 20_000, i);
    }
    let (url, messages) = receiver(false);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    let mut b = Daemon::new(tmp.path(), "b").args(&["--notify-url", &url]);
    let mut c = Daemon::new(tmp.path(), "c");
    a.start();
    b.start();
    c.start();
    befriend(&b, &a);
    wait_indexed(&a, 5);
    let an = a.name();

    let first = b.download(&format!("{an}/Music/track0.flac"));
    b.wait_download_done(first, Duration::from_secs(30));
    let told = messages
        .recv_timeout(Duration::from_secs(20))
        .expect("a message for the first download");
    assert_eq!(told.path, "/harddrive-party");
    assert_eq!(told.title, "harddrive-party: Download finished");
    assert_eq!(told.body, format!("Downloaded {an}/Music/track0.flac"));

    // Within the next 30 s: three more downloads, one that fails, and a stranger's knock.
    for i in 1..4 {
        let id = b.download(&format!("{an}/Music/track{i}.flac"));
        b.wait_download_done(id, Duration::from_secs(30));
    }
    b.download(&format!("{an}/Music/missing.flac"));
    assert!(!c.connect(&b.announce()), "a stranger was welcomed");
    let storm = messages
        .recv_timeout(Duration::from_secs(45))
        .expect("one message for the rest");
    assert_eq!(storm.title, "harddrive-party: 5 events", "{}", storm.body);
    for i in 1..4 {
        assert!(
            storm
                .body
                .contains(&format!("Downloaded {an}/Music/track{i}.flac")),
            "{}",
            storm.body
        );
    }
    assert!(
        storm
            .body
            .contains(&format!("Download failed: {an}/Music/missing.flac")),
        "{}",
        storm.body
    );
    assert!(
        storm
            .body
            .contains(&format!("{} asks to be your friend", c.name())),
        "{}",
        storm.body
    );
    assert!(
        messages.recv_timeout(Duration::from_secs(2)).is_err(),
        "nothing more was pending"
    );
}

#[test]
fn a_receiver_that_never_answers_holds_up_no_download() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("a-files/Films");
    write_random_file(&share.join("one.mkv"), 4_000_000, 1);
    write_random_file(&share.join("two.mkv"), 4_000_000, 2);
    let (url, messages) = receiver(true);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    let mut b = Daemon::new(tmp.path(), "b").args(&["--notify-url", &url]);
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, 3);
    let one = b.download(&format!("{}/Films/one.mkv", a.name()));
    b.wait_download_done(one, Duration::from_secs(30));
    messages
        .recv_timeout(Duration::from_secs(20))
        .expect("the notification reached the receiver, which holds it");
    // The next download runs while that request hangs.
    let two = b.download(&format!("{}/Films/two.mkv", a.name()));
    b.wait_download_done(two, Duration::from_secs(8));
    wait_for(
        "the hung notification to time out",
        Duration::from_secs(20),
        || {
            b.log_text()
                .lines()
                .any(|l| l.contains("notification to http://127.0.0.1") && l.contains("failed"))
                .then_some(())
        },
    );
}

#[test]
fn the_notification_url_is_checked_and_changed_live() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Daemon::new(tmp.path(), "b");
    b.start();
    assert_eq!(b.api_get("/api/settings")["notify_url"], "");
    let (status, message) = b
        .api_post(
            "/api/settings",
            serde_json::json!({ "notify_url": "ftp://ntfy.lan/x" }),
        )
        .expect_err("ftp is refused");
    assert_eq!(status, 400);
    assert!(
        message.contains("notify_url") && message.contains("https://"),
        "{message}"
    );
    let (url, _messages) = receiver(false);
    let saved = b
        .api_post("/api/settings", serde_json::json!({ "notify_url": url }))
        .unwrap();
    assert_eq!(saved["notify_url"], url.as_str());
    b.stop();
    b.start();
    assert_eq!(
        b.api_get("/api/settings")["notify_url"],
        url.as_str(),
        "kept"
    );
}

#[test]
fn an_https_receiver_is_reached_only_through_a_certificate_the_ca_store_vouches_for() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = certificate_authority(&tmp.path().join("ours.pem"));
    // A second authority, which signed nothing the receiver shows.
    certificate_authority(&tmp.path().join("other.pem"));
    let (url, messages) = serve(false, Some(ours));
    let with_store = |label: &str, pem: &str| {
        let mut daemon = Daemon::new(tmp.path(), label).args(&["--notify-url", &url]);
        let store = tmp.path().join(pem);
        daemon
            .env
            .push(("SSL_CERT_FILE".into(), store.display().to_string()));
        daemon.start();
        daemon
    };
    let trusting = with_store("trusting", "ours.pem");
    let doubting = with_store("doubting", "other.pem");
    let mut stranger = Daemon::new(tmp.path(), "stranger");
    stranger.start();

    assert!(
        !stranger.connect(&trusting.announce()),
        "a stranger was welcomed"
    );
    let told = messages
        .recv_timeout(Duration::from_secs(20))
        .expect("the request was told over TLS");
    assert_eq!(told.path, "/harddrive-party");
    assert_eq!(told.title, "harddrive-party: Friend request");
    assert_eq!(
        told.body,
        format!("{} asks to be your friend", stranger.name())
    );

    assert!(
        !stranger.connect(&doubting.announce()),
        "a stranger was welcomed"
    );
    wait_for(
        "the unvouched certificate to be refused",
        Duration::from_secs(20),
        || {
            doubting
                .log_text()
                .lines()
                .any(|l| l.contains("notification to https://localhost") && l.contains("failed"))
                .then_some(())
        },
    );
    assert!(
        messages.recv_timeout(Duration::from_secs(1)).is_err(),
        "no request got through a certificate the store does not vouch for"
    );
}
