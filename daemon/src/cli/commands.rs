//! The client commands that take more than one request or print more than one line:
//! connect, rescan, download (and waiting for it), read, stop.

use super::*;

pub(super) fn connect(client: &Client, announce_address: &str) -> anyhow::Result<()> {
    let reply = client.post(
        "/api/connect",
        json!({ "announce_address": announce_address }),
    )?;
    let name = reply["name"].as_str().unwrap_or("peer");
    if reply["approved"] == false {
        return Err(AwaitingApproval(name.to_string()).into());
    }
    println!("connected to {name}");
    Ok(())
}

pub(super) fn rescan(client: &Client) -> anyhow::Result<()> {
    let stats = client.post("/api/rescan", json!({}))?;
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    println!(
        "rescanned {} files in {} directories ({} entries written, {} removed)",
        n("files"),
        n("dirs"),
        n("written"),
        n("removed")
    );
    Ok(())
}

pub(super) fn download(
    client: &Client,
    path: &str,
    to: Option<&Path>,
    wait: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    // The daemon resolves the folder too; absolute here so a relative DIR means the
    // caller's working directory, not the daemon's.
    let to = to.map(std::path::absolute).transpose()?;
    let reply = client.post("/api/downloads", json!({ "path": path, "to": to }))?;
    let id = reply["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("daemon gave no download id"))?;
    if wait {
        wait_for_download(client, id, quiet)?;
    } else if !quiet {
        println!("queued download {id}: {path}");
    }
    Ok(())
}

pub(super) fn read_to_stdout(
    client: &Client,
    path: &str,
    start: Option<u64>,
    end: Option<u64>,
) -> anyhow::Result<()> {
    let mut query = vec![("path", path.to_string())];
    if let Some(s) = start {
        query.push(("start", s.to_string()));
    }
    if let Some(e) = end {
        query.push(("end", e.to_string()));
    }
    let response = client.get("/api/read", &query)?;
    let (_, headers, mut body) = response.split();
    let expected: Option<u64> = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut stdout = std::io::stdout().lock();
    let copied = std::io::copy(&mut body, &mut stdout).context("transfer interrupted")?;
    stdout.flush()?;
    if expected.is_some_and(|n| n != copied) {
        bail!("transfer interrupted after {copied} bytes");
    }
    Ok(())
}

fn wait_for_download(client: &Client, id: u64, quiet: bool) -> anyhow::Result<()> {
    let mut line = progress::ProgressLine::new(quiet);
    let started = Instant::now();
    loop {
        let t = client.get_json(&format!("/api/transfers/{id}"), &[])?;
        let current = t["active_files"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|file| file["path"].as_str())
            .unwrap_or("");
        line.update(
            t["received"].as_u64().unwrap_or(0),
            t["size"].as_u64().unwrap_or(0),
            &format!("{}/{} files {current}", t["files_done"], t["files_total"]),
        );
        match t["state"].as_str() {
            Some("done") => {
                line.finish();
                if !quiet {
                    eprintln!("done in {:.1?}", started.elapsed());
                }
                return Ok(());
            }
            Some("failed") => {
                line.finish();
                let mut reasons: Vec<String> = t["failures"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        format!(
                            "{}: {}",
                            f["path"].as_str().unwrap_or(""),
                            f["reason"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                if let Some(e) = t["error"].as_str() {
                    reasons.push(e.to_string());
                }
                bail!("download failed: {}", reasons.join("; "));
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Asks the daemon to stop and says what happened: stopped, or still shutting down (it
/// finishes writing and closes its connections first).
pub(super) fn stop(client: &Client) -> anyhow::Result<()> {
    let info = client.get_json("/api/info", &[]).ok();
    let name = info
        .as_ref()
        .and_then(|i| i["name"].as_str())
        .unwrap_or("the daemon")
        .to_string();
    client.post("/api/stop", json!({}))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.answers() {
        if Instant::now() >= deadline {
            println!("asked {name} to stop; it is still shutting down after 30 s");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stopped {name}");
    Ok(())
}
