//! Download path policy and progress arithmetic: how `peer/path` splits, where a remote
//! file lands locally (and its `.part`), whether a finished copy is already there, how
//! the queue reorders, and how fast a transfer goes.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnsafePath {
    #[error("remote path {0:?} is absolute, empty or contains '.', '..' or NUL; refused")]
    Refused(String),
    #[error("peer name {0:?} is not a plain name; refused")]
    BadPeerName(String),
}

/// `<download_dir>/<peer>/<remote path>`, refusing anything that could land outside it.
pub fn local_path(download_dir: &Path, peer: &str, remote: &str) -> Result<PathBuf, UnsafePath> {
    if !plain_peer_name(peer) {
        return Err(UnsafePath::BadPeerName(peer.to_string()));
    }
    below(download_dir.join(peer), remote)
}

/// `base/<remote>` when every segment of `remote` is a plain name.
fn below(mut out: PathBuf, remote: &str) -> Result<PathBuf, UnsafePath> {
    let refused = || UnsafePath::Refused(remote.to_string());
    if remote.is_empty() || remote.starts_with('/') || remote.contains('\0') {
        return Err(refused());
    }
    for part in remote.split('/') {
        let mut components = Path::new(part).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) if !part.is_empty() => out.push(name),
            _ => return Err(refused()),
        }
    }
    Ok(out)
}

/// Where `file` of the download of `download` (both remote paths) lands: under the peer's
/// folder of `download_dir` by default; with a destination `to` (`download --to`), the
/// download's own name goes straight into it (`music/Album/a.flac` asked as `music/Album`
/// lands at `TO/Album/a.flac`), where a media server expects it.
pub fn placed_path(
    download_dir: &Path,
    to: Option<&Path>,
    peer: &str,
    download: &str,
    file: &str,
) -> Result<PathBuf, UnsafePath> {
    let Some(to) = to else {
        return local_path(download_dir, peer, file);
    };
    let parent = download.rsplit_once('/').map_or("", |(parent, _)| parent);
    let rel = match parent {
        "" => file,
        _ => file
            .strip_prefix(parent)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| UnsafePath::Refused(file.to_string()))?,
    };
    below(to.to_path_buf(), rel)
}

/// The file or folder a `/downloads/` path (`peer/a/b`, a folder's with a trailing `/`)
/// names under `download_dir`, by the rules of `local_path`; `None` for an empty segment
/// (`//evil.example` must not become a redirect off the site), `.`, `..` or a bad peer name.
pub fn downloaded_path(download_dir: &Path, path: &str) -> Option<PathBuf> {
    let inner = path.strip_suffix('/').unwrap_or(path);
    let (peer, remote) = inner.split_once('/').unwrap_or((inner, ""));
    if !inner.contains('/') {
        return plain_peer_name(peer).then(|| download_dir.join(peer));
    }
    local_path(download_dir, peer, remote).ok()
}

/// Peer names are letters and digits, so one is always a single plain path component.
fn plain_peer_name(peer: &str) -> bool {
    !peer.is_empty() && peer.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Why a file cannot be downloaded now; checked before its piece list is asked for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoRoom {
    #[error("{size} bytes is larger than the largest file a download accepts (1 TiB)")]
    TooLarge { size: u64 },
    #[error("needs {need_mib} MiB more; {free_mib} MiB free, {reserve_mib} MiB of it the reserve (Settings, free-space reserve)")]
    Disk {
        need_mib: u64,
        free_mib: u64,
        reserve_mib: u64,
    },
}

/// Whether a file of `size` bytes, `on_disk` of them already in its `.part`, fits: at most
/// `MAX_DOWNLOAD_SIZE`, and the rest within the `free` bytes (when known) above the reserve.
pub fn room_for(size: u64, on_disk: u64, free: Option<u64>, reserve: u64) -> Result<(), NoRoom> {
    if size > crate::content::MAX_DOWNLOAD_SIZE {
        return Err(NoRoom::TooLarge { size });
    }
    let need = size.saturating_sub(on_disk);
    match free {
        Some(free) if free < reserve || need > free - reserve => {
            const MIB: u64 = 1024 * 1024;
            Err(NoRoom::Disk {
                need_mib: need.div_ceil(MIB),
                free_mib: free / MIB,
                reserve_mib: reserve / MIB,
            })
        }
        _ => Ok(()),
    }
}
/// Appended to a file's name while it is being downloaded.
pub const PART_SUFFIX: &str = ".part";

/// Where the partial download lives until it is complete.
pub fn part_path(local: &Path) -> PathBuf {
    let mut name = local
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(PART_SUFFIX);
    local.with_file_name(name)
}

/// A finished local file with the remote size and mtime (set when we completed it) is that
/// version already: no need to fetch it again.
pub fn already_have(local: Option<&std::fs::Metadata>, size: u64, mtime: u64) -> bool {
    local.is_some_and(|m| {
        let local_mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        m.is_file() && m.len() == size && local_mtime.map(|d| d.as_secs()) == Some(mtime)
    })
}

/// The queue `order` with `id` moved to `position` (clamped to the end); unknown ids leave
/// it unchanged.
pub fn reorder(order: &[u64], id: u64, position: usize) -> Vec<u64> {
    let mut out: Vec<u64> = order.iter().copied().filter(|i| *i != id).collect();
    if out.len() == order.len() {
        return out;
    }
    out.insert(position.min(out.len()), id);
    out
}

/// Exponentially weighted rate over ticks, in bytes per second.
#[derive(Debug, Clone)]
pub struct RateMeter {
    last: Option<(Instant, u64)>,
    rate: f64,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self {
            last: None,
            rate: 0.0,
        }
    }
}

impl RateMeter {
    const SMOOTHING: f64 = 0.3;

    /// Records the cumulative byte count at `now` and returns the smoothed rate.
    pub fn update(&mut self, now: Instant, total: u64) -> u64 {
        if let Some((then, before)) = self.last {
            let dt = now.saturating_duration_since(then);
            if dt >= Duration::from_millis(100) {
                let sample = total.saturating_sub(before) as f64 / dt.as_secs_f64();
                self.rate = if self.rate == 0.0 {
                    sample
                } else {
                    self.rate + Self::SMOOTHING * (sample - self.rate)
                };
                self.last = Some((now, total));
            }
        } else {
            self.last = Some((now, total));
        }
        self.rate as u64
    }

    pub fn rate(&self) -> u64 {
        self.rate as u64
    }
}

/// Seconds left at `rate`, or None when stalled or unknown.
pub fn eta_seconds(remaining: u64, rate: u64) -> Option<u64> {
    (rate > 0).then(|| remaining.div_ceil(rate))
}

/// A `peer/path` with no peer name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected peer/path")]
pub struct NoPeerName;

/// Splits `peer/path` (slashes around it ignored) into the peer name and the path on that
/// peer, which may be empty (the peer's top level).
pub fn split_peer_path(full: &str) -> Result<(&str, &str), NoPeerName> {
    let trimmed = full.trim_matches('/');
    let (peer, path) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if peer.is_empty() {
        return Err(NoPeerName);
    }
    Ok((peer, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_takes_the_download_by_its_own_name() {
        let (dl, to) = (Path::new("/dl"), Some(Path::new("/media/music")));
        let placed = |download, file| placed_path(dl, to, "Bob", download, file);
        assert_eq!(
            placed("music/Album", "music/Album/a.flac"),
            Ok(PathBuf::from("/media/music/Album/a.flac"))
        );
        assert_eq!(
            placed("music/a.wav", "music/a.wav"),
            Ok(PathBuf::from("/media/music/a.wav"))
        );
        assert_eq!(
            placed("music", "music/x/a.wav"),
            Ok(PathBuf::from("/media/music/music/x/a.wav"))
        );
        // A file outside the download, or one climbing out of the destination: refused.
        assert!(placed("music/Album", "films/b.mkv").is_err());
        assert!(placed("music/Album", "music/Album/../../etc").is_err());
        assert!(placed("music/Album", "musicx/a").is_err());
        assert_eq!(
            placed_path(dl, None, "Bob", "music/Album", "music/Album/a.flac"),
            Ok(PathBuf::from("/dl/Bob/music/Album/a.flac"))
        );
    }

    #[test]
    fn a_file_fits_below_the_maximum_and_above_the_reserve() {
        const MIB: u64 = 1024 * 1024;
        let max = crate::content::MAX_DOWNLOAD_SIZE;
        assert_eq!(room_for(max, 0, None, 0), Ok(()));
        assert_eq!(
            room_for(max + 1, max, None, 0),
            Err(NoRoom::TooLarge { size: max + 1 })
        );
        // 100 MiB free, 40 of them the reserve: 60 MiB more fit, counting the `.part`.
        let free = Some(100 * MIB);
        assert_eq!(room_for(60 * MIB, 0, free, 40 * MIB), Ok(()));
        assert_eq!(room_for(90 * MIB, 30 * MIB, free, 40 * MIB), Ok(()));
        assert_eq!(
            room_for(60 * MIB + 1, 0, free, 40 * MIB),
            Err(NoRoom::Disk {
                need_mib: 61,
                free_mib: 100,
                reserve_mib: 40
            })
        );
        // Below the reserve even a complete `.part` waits; an unknown free space passes.
        assert!(room_for(MIB, MIB, Some(MIB), 2 * MIB).is_err());
        assert_eq!(room_for(MIB, 0, None, 2 * MIB), Ok(()));
    }

    #[test]
    fn downloaded_paths_stay_inside_the_download_dir() {
        let base = Path::new("/dl");
        assert_eq!(
            downloaded_path(base, "Peer/a/b.txt"),
            Some(PathBuf::from("/dl/Peer/a/b.txt"))
        );
        assert_eq!(
            downloaded_path(base, "Peer/a/"),
            Some(PathBuf::from("/dl/Peer/a"))
        );
        assert_eq!(
            downloaded_path(base, "Peer"),
            Some(PathBuf::from("/dl/Peer"))
        );
        assert_eq!(
            downloaded_path(base, "Peer/"),
            Some(PathBuf::from("/dl/Peer"))
        );
        for bad in [
            "",
            "/",
            "//evil.example",
            "/evil.example/",
            "evil.example",
            "Peer//a",
            "Peer/../x",
            "../Peer",
            "Peer/./a",
            "Peer/a//",
            ".",
        ] {
            assert_eq!(downloaded_path(base, bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn local_paths_stay_inside_the_download_dir() {
        let base = Path::new("/dl");
        assert_eq!(
            local_path(base, "CalmOtter0a0b", "Music/a b.flac").unwrap(),
            Path::new("/dl/CalmOtter0a0b/Music/a b.flac")
        );
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "",
            "a/./b",
            "a\0",
            "a/..",
        ] {
            assert!(
                local_path(base, "Peer", bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        // A backslash is an ordinary character in a Unix file name, not a separator.
        assert_eq!(
            local_path(base, "Peer", "a\\..\\b").unwrap(),
            Path::new("/dl/Peer/a\\..\\b")
        );
        assert!(local_path(base, "../Peer", "a").is_err());
        assert!(local_path(base, "", "a").is_err());
    }

    #[test]
    fn a_finished_file_is_recognised_by_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(already_have(Some(&meta), 5, 1_600_000_000));
        assert!(!already_have(Some(&meta), 5, 1_600_000_001));
        assert!(!already_have(Some(&meta), 6, 1_600_000_000));
        assert!(!already_have(None, 5, 1_600_000_000));
    }

    #[test]
    fn reordering_moves_one_entry() {
        assert_eq!(reorder(&[1, 2, 3, 4], 4, 0), [4, 1, 2, 3]);
        assert_eq!(reorder(&[1, 2, 3, 4], 1, 2), [2, 3, 1, 4]);
        assert_eq!(reorder(&[1, 2, 3, 4], 2, 99), [1, 3, 4, 2]);
        assert_eq!(reorder(&[1, 2, 3], 9, 0), [1, 2, 3]);
    }

    #[test]
    fn part_file_sits_next_to_the_final_name() {
        assert_eq!(
            part_path(Path::new("/dl/p/a.mp3")),
            Path::new("/dl/p/a.mp3.part")
        );
    }

    #[test]
    fn rate_smooths_and_eta_follows() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        assert_eq!(m.update(t0, 0), 0);
        assert_eq!(m.update(t0 + Duration::from_secs(1), 1000), 1000);
        let r = m.update(t0 + Duration::from_secs(2), 1000);
        assert_eq!(r, 700);
        assert_eq!(eta_seconds(1400, 700), Some(2));
        assert_eq!(eta_seconds(10, 0), None);
    }

    #[test]
    fn peer_paths_split_at_the_first_slash() {
        assert_eq!(split_peer_path("Peer/a/b"), Ok(("Peer", "a/b")));
        assert_eq!(split_peer_path("/Peer/"), Ok(("Peer", "")));
        assert_eq!(split_peer_path("Peer"), Ok(("Peer", "")));
        assert_eq!(split_peer_path("//"), Err(NoPeerName));
        assert_eq!(split_peer_path(""), Err(NoPeerName));
    }
}
