//! Notifications (`--notify-url`, core `notify`) against an HTTP receiver this test runs on
//! loopback: a finished download is told at once, what follows within 30 s comes as one
//! message (a failure, more downloads, a stranger's friend request), a receiver that never
//! answers holds up no download, and the setting is checked and changed through the API.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/harddrive-party", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(100) {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let Some(request) = read_request(&stream) else {
                continue;
            };
            if tx.send(request).is_err() {
                return;
            }
            if hang {
                held.push(stream);
            } else {
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (url, rx)
}

fn read_request(stream: &TcpStream) -> Option<Received> {
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
            serde_json::json!({ "notify_url": "https://ntfy.sh/x" }),
        )
        .expect_err("https is refused");
    assert_eq!(status, 400);
    assert!(
        message.contains("notify_url") && message.contains("http://"),
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
