//! The local library between real daemons: a download sent to a configured folder
//! (`download --to`), a destination outside them refused, and the finished files listed,
//! served with Range and deleted after the download folder changed and with the friend
//! stopped; nothing that was not recorded as a finished download is ever served or deleted.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

struct Answer {
    status: u16,
    header: Option<String>,
    body: Vec<u8>,
}

/// GET `path` on `d`, with a Range header if given; `header` is `name`'s value.
fn get(d: &Daemon, path: &str, range: Option<&str>, name: &str) -> Answer {
    let response = ranged_get(&format!("{}{path}", d.ui), range);
    Answer {
        status: response.status(),
        header: response.header(name).map(str::to_string),
        body: body_of(response),
    }
}

fn library_paths(d: &Daemon) -> Vec<String> {
    let page = d.api_get("/api/library");
    assert!(page["free"].as_u64().is_some_and(|f| f > 0), "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn downloads_are_listed_served_and_deleted_where_they_were_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Music");
    write_random_file(&share.join("song.wav"), 300_000, 3);
    write_random_file(&share.join("notes.txt"), 5_000, 4);
    let song = std::fs::read(share.join("song.wav")).unwrap();
    let media = tmp.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    let media = media.canonicalize().unwrap();
    let (mut a, mut b) = sharer_and_downloader(
        tmp.path(),
        &share,
        3,
        &[],
        &["--share-dir", media.to_str().unwrap()],
    );
    let an = a.name();

    // Destinations are the folders configured here, never any other path.
    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    for to in [outside.clone(), b.download_dir.join(&an), media.join("..")] {
        let refused = b.api_post(
            "/api/downloads",
            json!({ "path": format!("{an}/Music/song.wav"), "to": to }),
        );
        assert!(
            matches!(&refused, Err((400, e)) if e.contains("not a folder configured here")),
            "{}: {refused:?}",
            to.display()
        );
    }
    let out = b.cli(&[
        "download",
        &format!("{an}/Music/song.wav"),
        "--to",
        outside.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "download --to outside must fail");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    b.cli_ok(&[
        "download",
        &format!("{an}/Music/song.wav"),
        "--to",
        media.to_str().unwrap(),
        "--wait",
        "--quiet",
    ]);
    assert!(std::fs::read(media.join("song.wav")).unwrap() == song);
    let notes = b.download(&format!("{an}/Music/notes.txt"));
    b.wait_download_done(notes, Duration::from_secs(30));
    let notes_path = b
        .download_dir
        .join(&an)
        .join("Music/notes.txt")
        .canonicalize()
        .unwrap();

    // The friend gone and the download folder moved: the library still has both.
    a.stop();
    let moved = tmp.path().join("moved");
    b.api_post("/api/settings", json!({ "download_dir": moved }))
        .unwrap();
    let song_path = media.join("song.wav");
    let mut want = vec![
        song_path.to_str().unwrap().to_string(),
        notes_path.to_str().unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(library_paths(&b), want);

    let url = |p: &std::path::Path| format!("/library?path={}", p.to_str().unwrap());
    let part = get(&b, &url(&song_path), Some("bytes=100-199"), "content-type");
    assert_eq!(part.status, 206);
    assert!(part.header.as_deref().unwrap_or("").starts_with("audio/"));
    assert!(part.body == song[100..200]);
    let saved = get(
        &b,
        &format!("{}&save=1", url(&song_path)),
        None,
        "content-disposition",
    );
    assert_eq!(saved.status, 200);
    assert_eq!(
        saved.header.as_deref(),
        Some("attachment; filename*=UTF-8''song.wav")
    );

    // Not recorded, or no longer the plain file that was: never served nor deleted.
    let stray = media.join("stray.txt");
    std::fs::write(&stray, "mine").unwrap();
    assert_eq!(get(&b, &url(&stray), None, "x").status, 404);
    assert_eq!(get(&b, "/library?path=/etc/passwd", None, "x").status, 404);
    let refused = b.api_post("/api/library/delete", json!({ "path": stray }));
    assert!(matches!(refused, Err((404, _))), "{refused:?}");
    assert!(stray.exists());
    // A folder on the recorded path swapped for a link: the path now leads elsewhere.
    let folder = notes_path.parent().unwrap();
    let real = folder.with_file_name("Music-real");
    std::fs::rename(folder, &real).unwrap();
    let planted = tmp.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("notes.txt"), "planted").unwrap();
    std::os::unix::fs::symlink(&planted, folder).unwrap();
    assert_eq!(get(&b, &url(&notes_path), None, "x").status, 404);
    std::fs::remove_file(folder).unwrap();
    std::fs::rename(&real, folder).unwrap();
    assert_eq!(get(&b, &url(&notes_path), None, "x").status, 200);
    // The file itself swapped for a link.
    std::fs::remove_file(&notes_path).unwrap();
    std::os::unix::fs::symlink(&stray, &notes_path).unwrap();
    assert_eq!(get(&b, &url(&notes_path), None, "x").status, 404);

    // Deleting takes the file and its record; the replaced one loses its record only.
    b.api_post("/api/library/delete", json!({ "path": song_path }))
        .unwrap();
    assert!(!song_path.exists());
    b.api_post("/api/library/delete", json!({ "path": notes_path }))
        .unwrap();
    assert!(stray.exists(), "the link's target is not touched");
    assert!(planted.join("notes.txt").exists());
    assert!(library_paths(&b).is_empty());
    b.stop();
}
