//! In-memory test doubles for the swarm: piece sources that answer honestly, lie, stall or
//! report another size, and a clock that moves only when the test says so.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::swarm::{Clock, PieceSource, RunBody};

/// How a fake source answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Manner {
    Honest,
    /// Flips a byte in the first piece of every run.
    Lies,
    /// Answers the request, then sends nothing.
    Stalls,
    /// Reports a file one byte longer.
    Resized,
}

pub struct Fake {
    pub name: &'static str,
    pub content: Bytes,
    pub manner: Manner,
    /// The runs it was asked for, in order.
    pub runs: Mutex<Vec<Range<u64>>>,
}

pub struct FakeBody {
    rest: Bytes,
    stalls: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("fake source failed")]
pub struct FakeError;

impl PieceSource for Fake {
    type Error = FakeError;
    type Body = FakeBody;

    fn peer(&self) -> &str {
        self.name
    }

    fn describe(&self) -> &str {
        "the test file"
    }

    async fn open_run(
        &self,
        pieces: Range<u64>,
        bytes: Range<u64>,
    ) -> Result<(u64, FakeBody), FakeError> {
        self.runs.lock().unwrap().push(pieces);
        let range = bytes.start as usize..bytes.end as usize;
        let mut rest = self.content.get(range).ok_or(FakeError)?.to_vec();
        if self.manner == Manner::Lies {
            rest[0] ^= 1;
        }
        let size = self.content.len() as u64 + u64::from(self.manner == Manner::Resized);
        let body = FakeBody {
            rest: rest.into(),
            stalls: self.manner == Manner::Stalls,
        };
        Ok((size, body))
    }
}

impl RunBody for FakeBody {
    type Error = FakeError;

    async fn next_chunk(&mut self, max: usize) -> Result<Option<Bytes>, FakeError> {
        if self.stalls {
            std::future::pending::<()>().await;
        }
        // Odd-sized chunks, so pieces are assembled from several and cut mid-chunk.
        let n = max.min(self.rest.len()).min(100_003);
        Ok((n > 0).then(|| self.rest.split_to(n)))
    }
}

/// Time that passes only when the test says so.
pub struct FakeClock {
    now: tokio::sync::watch::Sender<Duration>,
}

impl FakeClock {
    pub fn new() -> Self {
        Self {
            now: tokio::sync::watch::Sender::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += by);
    }
}

impl Clock for FakeClock {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut now = self.now.subscribe();
        let until = *now.borrow() + duration;
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= until).await;
        })
    }
}
