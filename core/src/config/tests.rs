//! Unit tests of the settings layers: precedence, bounds, the config file's errors.

use super::*;

fn defaults() -> Defaults {
    Defaults {
        storage: "/default/storage".into(),
        home_downloads: None,
    }
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let file = parse(
        Path::new("c.toml"),
        "storage = \"/var/lib/hdp\"\nshare_dirs = [\"/srv/a\"]\nmax_uploads = 3\nmdns = false\nupnp = false\n",
    )
    .unwrap();
    let flags_and_env = Layer {
        max_uploads: Some(9),
        share_dirs: Some(vec!["/srv/b".into()]),
        ..Layer::default()
    };
    let s = flags_and_env.over(file).settle(defaults());
    assert_eq!(s.max_uploads.given, Some(9));
    assert_eq!(s.share_dirs, [PathBuf::from("/srv/b")]);
    assert_eq!(s.storage, PathBuf::from("/var/lib/hdp"));
    assert_eq!(s.download_dir.given, None);
    assert_eq!(
        s.download_dir.default,
        PathBuf::from("/var/lib/hdp/downloads")
    );
    assert_eq!(s.mdns.given, Some(false));
    assert_eq!(s.upnp.given, Some(false));
    assert!(Layer::default().settle(defaults()).upnp.over(None));
    assert_eq!(
        Layer::default().settle(defaults()).trust,
        crate::peer_policy::TrustSettings::default(),
        "nobody is trusted without the user"
    );
    assert_eq!(s.max_downloads.over(None), 4);
    assert_eq!(s.ui_address, DEFAULT_UI_ADDRESS);
    assert_eq!(s.threads, 2);
}

#[test]
fn allowed_hosts_come_from_the_highest_layer_that_names_any() {
    let file = parse(
        Path::new("c.toml"),
        "allowed_hosts = [\"nas.example\", \"box.lan\"]\n",
    )
    .unwrap();
    let s = Layer::default().over(file.clone()).settle(defaults());
    assert_eq!(s.allowed_hosts, ["nas.example", "box.lan"]);
    let env = Layer {
        allowed_hosts: Some(vec!["env.example".into()]),
        ..Layer::default()
    };
    let flags = Layer {
        allowed_hosts: Some(vec!["flag.example".into()]),
        ..Layer::default()
    };
    let s = flags
        .over(env.clone().over(file.clone()))
        .settle(defaults());
    assert_eq!(s.allowed_hosts, ["flag.example"]);
    let s = Layer::default().over(env.over(file)).settle(defaults());
    assert_eq!(s.allowed_hosts, ["env.example"]);
    assert!(Layer::default().settle(defaults()).allowed_hosts.is_empty());
}

#[test]
fn a_typo_names_the_file_line_and_key() {
    let text = "storage = \"/x\"\n\nshare_dir = [\"/srv\"]\n";
    let err = parse(Path::new("/etc/harddrive-party/config.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/etc/harddrive-party/config.toml:3:1: "),
        "{err}"
    );
    assert!(err.contains("share_dir"), "{err}");
}

#[test]
fn a_wrong_type_names_the_line() {
    let err = parse(Path::new("c.toml"), "threads = 2\nmax_uploads = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("c.toml:2:"), "{err}");
    let err = parse(Path::new("c.toml"), "listen = \"not an address\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("c.toml:1:"), "{err}");
}

#[test]
fn rate_limits_accept_units_and_numbers() {
    let layer = parse(
        Path::new("c.toml"),
        "upload_limit = \"5MB\"\ndownload_limit = 1000\n",
    )
    .unwrap();
    assert_eq!(
        (layer.upload_limit, layer.download_limit),
        (Some(5_000_000), Some(1000))
    );
    let err = parse(
        Path::new("c.toml"),
        "threads = 1\nupload_limit = \"fast\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("c.toml:2:"), "{err}");
    let saved = Limits {
        upload: 1,
        download: 2,
        peer_upload: 3,
        peer_download: 4,
    };
    let overrides = LimitOverrides {
        download: Some(0),
        ..LimitOverrides::default()
    };
    assert_eq!(
        overrides.over(saved),
        Limits {
            download: 0,
            ..saved
        }
    );
}

#[test]
fn transport_choices_are_words_checked_at_load() {
    let layer = parse(
        Path::new("c.toml"),
        "cipher = \"chacha\"\ncongestion = \"cubic\"\n",
    )
    .unwrap();
    let s = layer.settle(defaults());
    assert_eq!(
        (s.cipher, s.congestion),
        (Cipher::Chacha, Congestion::Cubic)
    );
    let s = Layer::default().settle(defaults());
    assert_eq!((s.cipher, s.congestion), (Cipher::Auto, Congestion::Auto));
    let err = parse(Path::new("c.toml"), "threads = 1\ncipher = \"des\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("c.toml:2:"), "{err}");
    assert!(err.contains("auto, aes, chacha"), "{err}");
}

#[test]
fn limits_are_clamped_to_sane_values() {
    let s = Layer {
        threads: Some(0),
        max_uploads: Some(0),
        rescan_interval: Some(1),
        db_cache: Some(0),
        quic_window: Some(1),
        ..Layer::default()
    }
    .settle(defaults());
    assert_eq!(
        (
            s.threads,
            s.max_uploads.given,
            s.rescan_interval.given,
            s.db_cache,
            s.quic_window
        ),
        (1, Some(1), Some(10), 1 << 20, 256 << 10)
    );
    let s = Layer {
        db_cache: Some(u64::MAX),
        quic_window: Some(u64::MAX),
        ..Layer::default()
    }
    .settle(defaults());
    assert_eq!((s.db_cache, s.quic_window), (1 << 30, 256 << 20));
    let s = Layer::default().settle(defaults());
    assert_eq!((s.db_cache, s.quic_window), (4 << 20, 16 << 20));
}

#[test]
fn given_values_beat_stored_ones_which_beat_defaults() {
    let s = Layer {
        max_uploads: Some(3),
        ..Layer::default()
    }
    .settle(defaults());
    assert_eq!(s.max_uploads.clone().over(Some(5)), 3);
    assert_eq!(s.max_uploads_per_peer.clone().over(Some(5)), 5);
    assert_eq!(s.max_uploads_per_peer.over(None), 4);
    assert_eq!(
        s.download_dir.over(None),
        PathBuf::from("/default/storage/downloads")
    );
}
