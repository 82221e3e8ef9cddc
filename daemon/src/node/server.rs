//! The serving side of the wire protocol: one task per stream reads one request under a
//! timeout, validates it and answers from the index, the uploads, the partial downloads or
//! the gossip rules (PROTOCOL.md §4-§8).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Node;
use crate::identity::PublicKey;
use crate::shares::FriendView;
use crate::transfer::upload::OpenRange;
use crate::wire::{
    read_frame, write_frame, AnnounceReply, HashChunk, HashesHeader, HaveReply, JoinReply, LsChunk,
    LsChunker, ReadHeader, ReplyStream, Request, RequestStream, WireError, MAX_HASHES_PER_CHUNK,
    MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};
use harddrive_party_core::invite::InviteRefusal;

/// A peer that opens a stream must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Stream reset code for a request frame we could not parse.
const RESET_MALFORMED: u32 = 4;

async fn send_hashes(
    send: &mut impl ReplyStream,
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

/// The peer a request came from, as its connection authenticated it.
struct Requester {
    name: String,
    key: PublicKey,
    /// `quinn::Connection::stable_id` of the connection the request came on.
    connection: usize,
}

async fn finish_with<T: serde::Serialize>(send: &mut impl ReplyStream, reply: &T) {
    let _ = write_frame(send, reply, MAX_RESPONSE_FRAME).await;
    send.finish();
}

/// Answers `request` with `error`, in the reply type its kind expects.
pub(super) async fn refuse(send: &mut impl ReplyStream, request: &Request, error: WireError) {
    match request {
        Request::Ls { .. } => finish_with(send, &LsChunk::Error(error)).await,
        Request::Hashes { .. } => finish_with(send, &HashesHeader::Error(error)).await,
        Request::Read { .. } | Request::ReadPieces { .. } => {
            finish_with(send, &ReadHeader::Error(error)).await;
        }
        Request::Have { .. } => finish_with(send, &HaveReply::Refused(error)).await,
        Request::AnnouncePeer { .. } | Request::Introduce { .. } => {
            finish_with(send, &AnnounceReply::Error(error)).await;
        }
        // A push has no answer.
        Request::Hashed => {
            send.finish();
        }
        // Only a malformed join gets here (strangers' joins are answered by `invites`).
        Request::Join { .. } => {
            finish_with(send, &JoinReply::Refused(InviteRefusal::NotValid)).await;
        }
    }
}

impl Node {
    pub(super) async fn serve_stream(
        self: Arc<Self>,
        peer: String,
        peer_key: PublicKey,
        connection: usize,
        mut send: impl ReplyStream,
        mut recv: impl RequestStream,
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
                send.reset(RESET_MALFORMED);
                recv.stop(RESET_MALFORMED);
                return;
            }
            Err(_) => {
                send.reset(RESET_MALFORMED);
                return;
            }
        };
        let peer = Requester {
            name: peer,
            key: peer_key,
            connection,
        };
        match request.validate() {
            Ok(()) => self.answer(&peer, request, &mut send).await,
            Err(e) => refuse(&mut send, &request, e).await,
        }
    }

    /// The shares as `peer` may see them; every request that touches shared files goes
    /// through this view.
    fn shares_for(&self, peer: &Requester) -> Result<Arc<FriendView>, WireError> {
        self.friend_view(&peer.name).map(Arc::new).map_err(|e| {
            tracing::error!("cannot tell which shares {} sees: {e}", peer.name);
            WireError::Io("the sharing peer cannot read its settings".into())
        })
    }

    /// Answers a valid request.
    async fn answer(
        self: &Arc<Self>,
        peer: &Requester,
        request: Request,
        send: &mut impl ReplyStream,
    ) {
        match request {
            Request::Ls {
                path,
                searchterm,
                recursive,
            } => {
                let listed = match self.shares_for(peer) {
                    Ok(view) => {
                        self.stream_ls(send, view, path, searchterm, recursive)
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = listed {
                    let _ = write_frame(send, &LsChunk::Error(e), MAX_RESPONSE_FRAME).await;
                }
                send.finish();
            }
            Request::Read { path, start, end } => {
                let range = self
                    .shares_for(peer)
                    .and_then(|view| view.resolve(&path))
                    .and_then(|file| OpenRange::open(&file, start, end));
                self.uploads
                    .serve(&peer.name, peer.connection, &path, range, send)
                    .await;
            }
            Request::ReadPieces { root, first, end } => {
                let offered = self.downloads.partial(&root);
                let label = offered.as_ref().map_or("", |o| &*o.label).to_string();
                let range = match offered {
                    None => Err(WireError::NotFound),
                    Some(o) => o.swarm.open_pieces(first..end),
                };
                self.uploads
                    .serve(&peer.name, peer.connection, &label, range, send)
                    .await;
            }
            Request::Hashes { path } => match self.shares_for(peer) {
                Ok(view) => self.answer_hashes(view, path, send).await,
                Err(e) => finish_with(send, &HashesHeader::Error(e)).await,
            },
            Request::Have { root } => {
                let reply = match self.shares_for(peer) {
                    Ok(view) => self.have(view, root).await,
                    Err(e) => HaveReply::Refused(e),
                };
                finish_with(send, &reply).await;
            }
            Request::Hashed => {
                self.downloads.swarm_news(&peer.name);
                send.finish();
            }
            // A friend with an invite (a second device, an old link): nothing to spend.
            Request::Join { .. } => finish_with(send, &JoinReply::Welcome).await,
            Request::AnnouncePeer { announce_address } => {
                let reply = self.on_announce(&peer.name, &peer.key, &announce_address);
                finish_with(send, &reply).await;
            }
            Request::Introduce {
                target,
                announce_address,
            } => {
                let reply = self
                    .on_introduce(&peer.name, &peer.key, &target, announce_address)
                    .await;
                finish_with(send, &reply).await;
            }
        }
    }

    async fn answer_hashes(
        &self,
        view: Arc<FriendView>,
        path: String,
        send: &mut impl ReplyStream,
    ) {
        let result = tokio::task::spawn_blocking(move || view.content_hashes(&path))
            .await
            .unwrap_or_else(|e| Err(WireError::Io(e.to_string())));
        let _ = match result {
            Ok(record) => send_hashes(send, record).await,
            Err(e) => return finish_with(send, &HashesHeader::Error(e)).await,
        };
        send.finish();
    }

    /// A complete shared copy beats a partial one still being downloaded.
    async fn have(&self, view: Arc<FriendView>, root: [u8; 32]) -> HaveReply {
        let found = tokio::task::spawn_blocking(move || view.find_root(&root))
            .await
            .ok()
            .flatten();
        match (found, self.downloads.partial(&root)) {
            (Some((path, record)), _) => HaveReply::Found {
                path,
                size: record.size,
            },
            (None, Some(o)) => HaveReply::partial(o.swarm.size, &o.swarm.have()),
            (None, None) => HaveReply::NotFound,
        }
    }

    /// Streams an `Ls` answer in bounded chunks straight from the index.
    async fn stream_ls(
        &self,
        send: &mut impl ReplyStream,
        view: Arc<FriendView>,
        path: String,
        searchterm: Option<String>,
        recursive: bool,
    ) -> Result<(), WireError> {
        let (tx, mut rx) = mpsc::channel::<Vec<crate::wire::Entry>>(2);
        let lister = tokio::task::spawn_blocking(move || {
            let mut chunker = LsChunker::default();
            let mut open = true;
            let result = view.ls(&path, searchterm.as_deref(), recursive, |entry| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{Ended, PipeReply};

    #[tokio::test]
    async fn each_refusal_is_the_reply_its_request_kind_reads_then_the_end() {
        let error = WireError::NotFound;
        let cases = [
            Request::Hashes { path: "a".into() },
            Request::Have { root: [7; 32] },
            Request::Read {
                path: "a".into(),
                start: 0,
                end: None,
            },
        ];
        for request in cases {
            let (mut reply, mut requester) = PipeReply::new(4096);
            refuse(&mut reply, &request, error.clone()).await;
            assert_eq!(reply.ended, Some(Ended::Finished), "{request:?}");
            let limit = MAX_RESPONSE_FRAME;
            match request {
                Request::Hashes { .. } => assert_eq!(
                    read_frame::<HashesHeader, _>(&mut requester, limit)
                        .await
                        .unwrap(),
                    HashesHeader::Error(error.clone())
                ),
                Request::Have { .. } => assert_eq!(
                    read_frame::<HaveReply, _>(&mut requester, limit)
                        .await
                        .unwrap(),
                    HaveReply::Refused(error.clone())
                ),
                _ => assert_eq!(
                    read_frame::<ReadHeader, _>(&mut requester, limit)
                        .await
                        .unwrap(),
                    ReadHeader::Error(error.clone())
                ),
            }
        }
        // A push has no answer: the stream just ends.
        let (mut reply, mut requester) = PipeReply::new(64);
        refuse(&mut reply, &Request::Hashed, error).await;
        assert_eq!(reply.ended, Some(Ended::Finished));
        drop(reply);
        assert!(matches!(
            read_frame::<HaveReply, _>(&mut requester, MAX_RESPONSE_FRAME).await,
            Err(crate::wire::FrameError::Eof)
        ));
    }

    #[tokio::test]
    async fn a_long_piece_list_goes_in_bounded_chunks_after_its_header() {
        let pieces: Vec<[u8; 32]> = (0..MAX_HASHES_PER_CHUNK + 5)
            .map(|i| [(i % 256) as u8; 32])
            .collect();
        let record = crate::store::HashRecord {
            size: 1 << 40,
            mtime: 9,
            inode: 1,
            root: [3; 32],
            pieces: pieces.clone(),
        };
        let (mut reply, mut requester) = PipeReply::new(1 << 20);
        let reading = tokio::spawn(async move {
            let header: HashesHeader = read_frame(&mut requester, MAX_RESPONSE_FRAME)
                .await
                .unwrap();
            let mut chunks = Vec::new();
            while let Ok(HashChunk(chunk)) = read_frame(&mut requester, MAX_RESPONSE_FRAME).await {
                chunks.push(chunk);
            }
            (header, chunks)
        });
        send_hashes(&mut reply, record).await.unwrap();
        drop(reply);
        let (header, chunks) = reading.await.unwrap();
        assert_eq!(
            header,
            HashesHeader::Ok {
                size: 1 << 40,
                mtime: 9,
                root: [3; 32]
            }
        );
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_HASHES_PER_CHUNK, 5]
        );
        assert_eq!(chunks.concat(), pieces);
    }
}
