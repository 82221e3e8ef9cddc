//! Reused piece-sized buffers for the transfer paths. A piece or read chunk is up to
//! 1 MiB; allocated afresh each time, musl's allocator (the static builds) maps and unmaps
//! it, so every 4 KiB page faults again, on every piece. A few buffers kept for reuse
//! remove that cost; the bound keeps an idle daemon small.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;

/// At most this many idle buffers are kept (about 8 MiB); the rest are freed.
const KEEP: usize = 8;

/// The process-wide pool both directions share.
pub static BUFFERS: LazyLock<Arc<BufferPool>> = LazyLock::new(|| BufferPool::new(KEEP));

pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::new(Vec::with_capacity(keep)),
            keep,
        })
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub fn take(self: &Arc<Self>, capacity: usize) -> PooledBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut buf = reused.unwrap_or_default();
        buf.reserve(capacity);
        PooledBuf {
            buf,
            pool: self.clone(),
        }
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A buffer that returns to its pool when dropped, also after `freeze` once the last
/// `Bytes` view of it is gone (for example when QUIC has had it acknowledged).
pub struct PooledBuf {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl PooledBuf {
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Deref for PooledBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(2);
        let mut first = pool.take(1024);
        first.extend_from_slice(b"piece");
        let address = first.as_ptr();
        drop(first);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(1024);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the same allocation is reused");
        let held: Vec<PooledBuf> = (0..5).map(|_| pool.take(16)).collect();
        drop(held);
        drop(again);
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn frozen_buffers_return_when_the_last_view_drops() {
        let pool = BufferPool::new(4);
        let mut buf = pool.take(8);
        buf.extend_from_slice(b"abcdefgh");
        let bytes = buf.freeze();
        let view = bytes.slice(2..4);
        drop(bytes);
        assert_eq!(pool.idle(), 0);
        assert_eq!(&view[..], b"cd");
        drop(view);
        assert_eq!(pool.idle(), 1);
    }
}
