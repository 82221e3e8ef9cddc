//! The serving side of the wire protocol: one task per stream reads one request under a
//! timeout, validates it and answers from the index, the uploads, the partial downloads or
//! the gossip rules (PROTOCOL.md §4-§8).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Node;
use crate::identity::PublicKey;
use crate::transfer::upload::OpenRange;
use crate::wire::{
    read_frame, write_frame, AnnounceReply, HashChunk, HashesHeader, HaveReply, LsChunk, LsChunker,
    Request, WireError, MAX_HASHES_PER_CHUNK, MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};

/// A peer that opens a stream must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Stream reset code for a request frame we could not parse.
const RESET_MALFORMED: u32 = 4;

async fn send_hashes(
    send: &mut quinn::SendStream,
    record: crate::store::HashRecord,
) -> Result<(), crate::wire::FrameError> {
    let header = HashesHeader::Ok {
        size: record.size,
        mtime: record.mtime,
        root: record.root,
    };
    write_frame(send, &header, MAX_RESPONSE_FRAME).await?;
    for chunk in record.pieces.chunks(MAX_HASHES_PER_CHUNK) {
        write_frame(send, &HashChunk(chunk.to_vec()), MAX_RESPONSE_FRAME).await?;
    }
    Ok(())
}

impl Node {
    pub(super) async fn serve_stream(
        self: Arc<Self>,
        peer: String,
        peer_key: PublicKey,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let request = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_frame::<Request, _>(&mut recv, MAX_REQUEST_FRAME),
        )
        .await
        {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                tracing::info!("bad request from {peer}: {e}; closing that stream");
                let _ = send.reset(RESET_MALFORMED.into());
                let _ = recv.stop(RESET_MALFORMED.into());
                return;
            }
            Err(_) => {
                let _ = send.reset(RESET_MALFORMED.into());
                return;
            }
        };
        let invalid = request.validate().err();
        match request {
            Request::Ls {
                path,
                searchterm,
                recursive,
            } => {
                let result = match invalid {
                    Some(e) => Err(e),
                    None => self.stream_ls(&mut send, path, searchterm, recursive).await,
                };
                if let Err(e) = result {
                    let _ = write_frame(&mut send, &LsChunk::Error(e), MAX_RESPONSE_FRAME).await;
                }
                let _ = send.finish();
            }
            Request::Read { path, start, end } => {
                let range = match invalid {
                    Some(e) => Err(e),
                    None => self
                        .library
                        .shares()
                        .resolve(&path)
                        .and_then(|file| OpenRange::open(&file, start, end)),
                };
                self.uploads.serve(&peer, &path, range, &mut send).await;
            }
            Request::ReadPieces { root, first, end } => {
                let offered = self.downloads.partial(&root);
                let label = offered.as_ref().map_or("", |o| &*o.label).to_string();
                let range = match (invalid, offered) {
                    (Some(e), _) => Err(e),
                    (None, None) => Err(WireError::NotFound),
                    (None, Some(o)) => o.swarm.open_pieces(first..end),
                };
                self.uploads.serve(&peer, &label, range, &mut send).await;
            }
            Request::Hashes { path } => {
                let result = match invalid {
                    Some(e) => Err(e),
                    None => {
                        let shares = self.library.shares().clone();
                        tokio::task::spawn_blocking(move || shares.content_hashes(&path))
                            .await
                            .unwrap_or_else(|e| Err(WireError::Io(e.to_string())))
                    }
                };
                let _ = match result {
                    Ok(record) => send_hashes(&mut send, record).await,
                    Err(e) => {
                        write_frame(&mut send, &HashesHeader::Error(e), MAX_RESPONSE_FRAME).await
                    }
                };
                let _ = send.finish();
            }
            Request::Have { root } => {
                let shares = self.library.shares().clone();
                let found = tokio::task::spawn_blocking(move || shares.find_root(&root))
                    .await
                    .ok()
                    .flatten();
                // A complete shared copy beats a partial one still being downloaded.
                let reply = match (found, self.downloads.partial(&root)) {
                    (Some((path, record)), _) => HaveReply::Found {
                        path,
                        size: record.size,
                    },
                    (None, Some(o)) => HaveReply::partial(o.swarm.size, &o.swarm.have()),
                    (None, None) => HaveReply::NotFound,
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
            Request::AnnouncePeer { announce_address } => {
                let reply = match invalid {
                    Some(e) => AnnounceReply::Error(e),
                    None => self.on_announce(&peer, &peer_key, &announce_address),
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
            Request::Introduce {
                target,
                announce_address,
            } => {
                let reply = match invalid {
                    Some(e) => AnnounceReply::Error(e),
                    None => {
                        self.on_introduce(&peer, &peer_key, &target, announce_address)
                            .await
                    }
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
        }
    }

    /// Streams an `Ls` answer in bounded chunks straight from the index.
    async fn stream_ls(
        &self,
        send: &mut quinn::SendStream,
        path: String,
        searchterm: Option<String>,
        recursive: bool,
    ) -> Result<(), WireError> {
        let (tx, mut rx) = mpsc::channel::<Vec<crate::wire::Entry>>(2);
        let shares = self.library.shares().clone();
        let lister = tokio::task::spawn_blocking(move || {
            let mut chunker = LsChunker::default();
            let mut open = true;
            let result = shares.ls(&path, searchterm.as_deref(), recursive, |entry| {
                if let Some(chunk) = chunker.push(entry) {
                    open = tx.blocking_send(chunk).is_ok();
                }
                open
            });
            let rest = chunker.take();
            if open && !rest.is_empty() {
                let _ = tx.blocking_send(rest);
            }
            result
        });
        while let Some(chunk) = rx.recv().await {
            if write_frame(send, &LsChunk::Entries(chunk), MAX_RESPONSE_FRAME)
                .await
                .is_err()
            {
                break;
            }
        }
        // A peer that stopped reading must not leave the lister blocked on a full channel.
        drop(rx);
        lister
            .await
            .unwrap_or_else(|e| Err(WireError::Io(e.to_string())))
    }
}
