//! Unit tests of the share index: listing, search, rescans, resolving paths, hashes.

use super::*;

fn setup() -> (tempfile::TempDir, Shares) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("storage"), 1 << 20).unwrap());
    (dir, Shares::open(store).unwrap())
}

fn collect(shares: &Shares, path: &str, search: Option<&str>, recursive: bool) -> Vec<String> {
    let mut out = Vec::new();
    shares
        .ls(path, search, recursive, |e| {
            out.push(format!("{}:{}", e.path, e.size));
            true
        })
        .unwrap();
    out
}

#[test]
fn index_lists_searches_and_sums_sizes() {
    let (tmp, shares) = setup();
    let music = tmp.path().join("Music");
    fs::create_dir_all(music.join("Album/CD1")).unwrap();
    fs::write(music.join("Album/CD1/track.flac"), vec![0; 100]).unwrap();
    fs::write(music.join("Album/cover.JPG"), vec![0; 10]).unwrap();
    fs::write(music.join("Album-notes.txt"), vec![0; 1]).unwrap();
    let (name, stats) = shares.add(&music).unwrap();
    assert_eq!(name, "Music");
    assert_eq!(stats.files, 3);
    assert_eq!(collect(&shares, "", None, false), ["Music:111"]);
    assert_eq!(
        collect(&shares, "Music", None, false),
        ["Music/Album:110", "Music/Album-notes.txt:1"]
    );
    let recursive: std::collections::BTreeSet<String> =
        collect(&shares, "Music", None, true).into_iter().collect();
    let expected = [
        "Music/Album:110",
        "Music/Album/CD1:100",
        "Music/Album/CD1/track.flac:100",
        "Music/Album/cover.JPG:10",
        "Music/Album-notes.txt:1",
    ];
    assert_eq!(recursive, expected.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        collect(&shares, "", Some("COVER"), true),
        ["Music/Album/cover.JPG:10"]
    );
    assert_eq!(
        collect(&shares, "Music/Album/cover.JPG", None, false),
        ["Music/Album/cover.JPG:10"]
    );
    let mut missing = Vec::new();
    assert_eq!(
        shares.ls("Music/nope", None, true, |e| {
            missing.push(e);
            true
        }),
        Err(WireError::NotFound)
    );
}

#[test]
fn files_after_walks_every_file_once_in_bounded_batches() {
    let (tmp, shares) = setup();
    let music = tmp.path().join("Music");
    for (i, path) in ["a/1", "a/2", "a/b/3", "c", "d/4"].iter().enumerate() {
        let path = music.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![0; i]).unwrap();
    }
    shares.add(&music).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let batch = shares.files_after(after.as_deref(), 2).unwrap();
        assert!(batch.len() <= 2);
        seen.extend(batch.iter().cloned());
        if batch.len() < 2 {
            break;
        }
        after = batch.last().cloned();
    }
    assert_eq!(
        seen,
        [
            "Music/a/1",
            "Music/a/2",
            "Music/a/b/3",
            "Music/c",
            "Music/d/4"
        ],
        "files only, each once, in key order"
    );
}

#[test]
fn rescan_writes_only_changes_and_drops_removed_subtrees() {
    let (tmp, shares) = setup();
    let root = tmp.path().join("data");
    fs::create_dir_all(root.join("keep")).unwrap();
    fs::create_dir_all(root.join("gone/deep")).unwrap();
    fs::write(root.join("keep/a"), b"aa").unwrap();
    fs::write(root.join("gone/deep/b"), b"b").unwrap();
    shares.add(&root).unwrap();
    let unchanged = shares.rescan("data").unwrap();
    assert_eq!(unchanged.written, 0);
    assert_eq!(unchanged.removed, 0);
    fs::remove_dir_all(root.join("gone")).unwrap();
    fs::write(root.join("keep/a"), b"aaaa").unwrap();
    let changed = shares.rescan("data").unwrap();
    assert_eq!(changed.removed, 1);
    assert!(changed.written >= 2, "{changed:?}");
    assert_eq!(
        collect(&shares, "", None, true),
        ["data:4", "data/keep:4", "data/keep/a:4"]
    );
}

#[test]
fn same_base_names_get_distinct_shares() {
    let (tmp, shares) = setup();
    for parent in ["one", "two"] {
        let dir = tmp.path().join(parent).join("Photos");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{parent}.jpg")), b"x").unwrap();
    }
    assert_eq!(
        shares.add(&tmp.path().join("one/Photos")).unwrap().0,
        "Photos"
    );
    assert_eq!(
        shares.add(&tmp.path().join("two/Photos")).unwrap().0,
        "Photos-2"
    );
    assert!(matches!(
        shares.add(&tmp.path().join("two/Photos")),
        Err(SharesError::AlreadyShared(_))
    ));
    assert_eq!(
        collect(&shares, "Photos-2", None, true),
        ["Photos-2/two.jpg:1"]
    );
    shares.remove("Photos").unwrap();
    assert_eq!(
        collect(&shares, "", None, true),
        ["Photos-2:1", "Photos-2/two.jpg:1"]
    );
}

#[test]
fn content_hashes_are_cached_and_recomputed_when_the_file_changes() {
    let (tmp, shares) = setup();
    let root = tmp.path().join("Films");
    fs::create_dir_all(&root).unwrap();
    let film = root.join("a.mkv");
    fs::write(&film, vec![7u8; 3 * 1024 * 1024 + 5]).unwrap();
    shares.add(&root).unwrap();
    let first = shares.content_hashes("Films/a.mkv").unwrap();
    assert_eq!(first.pieces.len(), 4);
    assert_eq!(
        crate::content::check_list(first.size, &first.root, &first.pieces),
        Ok(())
    );
    assert_eq!(
        shares.find_root(&first.root).map(|(p, _)| p).as_deref(),
        Some("Films/a.mkv")
    );
    assert_eq!(shares.content_hashes("Films/a.mkv").unwrap(), first);
    // Same size, new content and mtime: the cache must not answer for it.
    fs::write(&film, vec![8u8; 3 * 1024 * 1024 + 5]).unwrap();
    let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    fs::File::options()
        .write(true)
        .open(&film)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(shares.find_root(&first.root).is_none());
    let second = shares.content_hashes("Films/a.mkv").unwrap();
    assert_ne!(second.root, first.root);
    assert!(matches!(
        shares.content_hashes("Films/../x"),
        Err(WireError::Forbidden)
    ));
}

#[test]
fn part_files_of_the_download_folder_are_neither_indexed_nor_served() {
    let (tmp, shares) = setup();
    let downloads = tmp.path().join("downloads");
    fs::create_dir_all(downloads.join("Peer/Films")).unwrap();
    fs::write(downloads.join("Peer/Films/a.mkv"), b"whole").unwrap();
    fs::write(downloads.join("Peer/Films/b.mkv.part"), b"half").unwrap();
    // Elsewhere a .part file is an ordinary file of the user's.
    let music = tmp.path().join("Music");
    fs::create_dir_all(&music).unwrap();
    fs::write(music.join("song.part"), b"mine").unwrap();
    shares.set_download_dir(&downloads.canonicalize().unwrap());
    shares.add(&downloads).unwrap();
    shares.add(&music).unwrap();
    assert_eq!(
        collect(&shares, "downloads", None, true),
        [
            "downloads/Peer:5",
            "downloads/Peer/Films:5",
            "downloads/Peer/Films/a.mkv:5"
        ]
    );
    assert_eq!(
        shares.resolve("downloads/Peer/Films/b.mkv.part"),
        Err(WireError::NotFound)
    );
    assert_eq!(
        collect(&shares, "Music", None, false),
        ["Music/song.part:4"]
    );
    assert!(shares.resolve("Music/song.part").is_ok());
    // Once a download was sent to Music (`--to`), its `.part` files there are skipped too.
    shares.add_destination(&music.canonicalize().unwrap());
    shares.rescan("Music").unwrap();
    assert!(collect(&shares, "Music", None, false).is_empty());
    assert_eq!(shares.resolve("Music/song.part"), Err(WireError::NotFound));
    // The watcher's re-read of one directory applies the same rule.
    fs::write(downloads.join("Peer/Films/c.mkv.part"), b"new").unwrap();
    shares.reindex_dir("downloads/Peer/Films", &[]).unwrap();
    assert_eq!(
        collect(&shares, "downloads/Peer/Films", None, false).len(),
        1
    );
}

#[test]
fn hashes_of_a_finished_download_are_adopted_and_found_by_root() {
    let (tmp, shares) = setup();
    let downloads = tmp.path().join("downloads");
    fs::create_dir_all(downloads.join("Peer")).unwrap();
    let file = downloads.join("Peer/film.mkv");
    let bytes = vec![3u8; 2 * 1024 * 1024 + 1];
    fs::write(&file, &bytes).unwrap();
    let pieces: Vec<_> = bytes
        .chunks(1 << 20)
        .map(crate::content::hash_piece)
        .collect();
    let root = crate::content::root_of(bytes.len() as u64, &pieces);
    shares.add(&downloads).unwrap();
    let real = file.canonicalize().unwrap();
    // A size that no longer matches is not cached.
    shares.adopt_hashes(&real, 5, root, pieces.clone());
    assert!(shares.find_root(&root).is_none());
    shares.adopt_hashes(&real, bytes.len() as u64, root, pieces.clone());
    let (path, record) = shares.find_root(&root).expect("found without hashing");
    assert_eq!(path, "downloads/Peer/film.mkv");
    assert_eq!(record.pieces, pieces);
    // Outside every share there is nothing to find it by.
    let outside = tmp.path().join("elsewhere.bin");
    fs::write(&outside, b"x").unwrap();
    shares.adopt_hashes(&outside.canonicalize().unwrap(), 1, [9; 32], vec![[9; 32]]);
    assert!(shares.find_root(&[9; 32]).is_none());
}

#[test]
fn symlinks_leaving_the_share_are_neither_indexed_nor_served() {
    let (tmp, shares) = setup();
    let root = tmp.path().join("share");
    fs::create_dir_all(&root).unwrap();
    fs::write(tmp.path().join("secret"), b"secret").unwrap();
    fs::write(root.join("inside"), b"ok").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("escape")).unwrap();
    std::os::unix::fs::symlink(root.join("inside"), root.join("alias")).unwrap();
    shares.add(&root).unwrap();
    assert_eq!(
        collect(&shares, "share", None, false),
        ["share/alias:2", "share/inside:2"]
    );
    assert_eq!(shares.resolve("share/escape"), Err(WireError::Forbidden));
    assert_eq!(shares.resolve("share/../secret"), Err(WireError::Forbidden));
    assert!(shares.resolve("share/alias").is_ok());
    assert_eq!(shares.resolve("share/missing"), Err(WireError::NotFound));
}
