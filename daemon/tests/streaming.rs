//! `/api/read` as a media player uses it: a media type from the file name, and `Range`
//! requests answered 206 with the exact bytes or 416 with the size, between real daemons.

mod common;

use common::*;

struct Answer {
    status: u16,
    content_type: String,
    content_range: Option<String>,
    body: Vec<u8>,
}

fn read(b: &Daemon, path: &str, range: Option<&str>) -> Answer {
    let response = ranged_get(&format!("{}/api/read?path={path}", b.ui), range);
    Answer {
        status: response.status(),
        content_type: response.header("content-type").unwrap_or("").to_string(),
        content_range: response.header("content-range").map(str::to_string),
        body: body_of(response),
    }
}

#[test]
fn ranges_are_served_as_players_expect_and_bad_ones_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Music");
    let size: u64 = 3_000_123;
    write_random_file(&share.join("clip.mp3"), size, 7);
    let original = std::fs::read(share.join("clip.mp3")).unwrap();
    let (a, b) = sharer_and_downloader(tmp.path(), &share, 2, &[], &[]);
    let path = format!("{}/Music/clip.mp3", a.name());

    let whole = read(&b, &path, None);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.content_type, "audio/mpeg");
    assert!(whole.body == original, "the whole file, unchanged");

    let cases: [(&str, std::ops::Range<usize>); 4] = [
        ("bytes=100-199", 100..200),
        ("bytes=-50", original.len() - 50..original.len()),
        ("bytes=2999000-", 2_999_000..original.len()),
        ("bytes=0-999999999", 0..original.len()),
    ];
    for (range, wanted) in cases {
        let answer = read(&b, &path, Some(range));
        assert_eq!(answer.status, 206, "{range}");
        assert_eq!(answer.content_type, "audio/mpeg", "{range}");
        assert_eq!(
            answer.content_range.as_deref(),
            Some(format!("bytes {}-{}/{size}", wanted.start, wanted.end - 1).as_str()),
            "{range}"
        );
        assert!(answer.body == original[wanted], "{range}: the exact bytes");
    }

    for bad in [
        format!("bytes={size}-"),
        "bytes=5-1".to_string(),
        "bytes=0-1,5-9".to_string(),
        "pages=1-2".to_string(),
        "bytes=-0".to_string(),
    ] {
        let answer = read(&b, &path, Some(&bad));
        assert_eq!(answer.status, 416, "{bad}");
        assert_eq!(
            answer.content_range.as_deref(),
            Some(format!("bytes */{size}").as_str()),
            "{bad}"
        );
    }
}
