//! The peer UDP socket, shared by QUIC and the NAT traversal control traffic (STUN answers
//! and punch probes), which must leave from the very port QUIC uses or the NAT mapping they
//! discover or open would belong to another port.
//!
//! quinn keeps its batched receive path (GRO/recvmmsg) and GSO sends: this wrapper delegates
//! to quinn's own socket and only lifts control datagrams out of each received batch. Our
//! endpoints never grease the QUIC fixed bit, so every QUIC packet has bit 0x40 set and any
//! datagram without it is control traffic (STUN's first two bits are zero by design).

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

/// Control datagrams waiting for the NAT task; beyond this they are dropped, like any UDP
/// overflow, so a flood cannot grow memory.
const CONTROL_QUEUE: usize = 256;
/// The largest control datagram we keep (STUN answers, punch probes are far smaller).
const MAX_CONTROL_DATAGRAM: usize = 1500;
/// The kernel builds a GSO batch as one UDP datagram before it splits it into segments, so
/// a batch can be no longer than the largest IPv4 UDP payload.
const MAX_GSO_BATCH: usize = 65_507;
/// GRO never coalesces more than 64 KiB into one receive (the kernel's `gro_max_size`, and
/// a looped-back GSO batch is bounded as above).
const MAX_GRO_BYTES: usize = 65_535;

#[derive(Debug)]
pub struct ControlDatagram {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
}

pub use harddrive_party_core::punch::is_control;

pub struct DemuxSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    control: mpsc::Sender<ControlDatagram>,
    /// The endpoint's `max_udp_payload_size`: quinn sizes each receive slot as this times
    /// `max_receive_segments`.
    max_udp_payload: usize,
}

impl fmt::Debug for DemuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemuxSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl DemuxSocket {
    pub fn wrap(
        socket: std::net::UdpSocket,
        max_udp_payload: u16,
    ) -> io::Result<(Arc<Self>, mpsc::Receiver<ControlDatagram>)> {
        let inner = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)?;
        let (control, receiver) = mpsc::channel(CONTROL_QUEUE);
        Ok((
            Arc::new(Self {
                inner,
                control,
                max_udp_payload: usize::from(max_udp_payload).max(1),
            }),
            receiver,
        ))
    }

    /// Sends one control datagram from the QUIC port. A full socket buffer drops it, as the
    /// network might: probes and STUN requests are retried on their own schedules.
    pub fn send_control(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        self.inner.try_send(&Transmit {
            destination: to,
            ecn: None,
            contents: bytes,
            segment_size: None,
            src_ip: None,
        })
    }

    fn divert(&self, from: SocketAddr, data: &[u8], stride: usize) {
        for datagram in data.chunks(stride.max(1)) {
            if is_control(datagram) && datagram.len() <= MAX_CONTROL_DATAGRAM {
                let _ = self.control.try_send(ControlDatagram {
                    from,
                    bytes: datagram.to_vec(),
                });
            }
        }
    }
}

impl AsyncUdpSocket for DemuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let Some(segment) = transmit
            .segment_size
            .filter(|_| transmit.contents.len() > MAX_GSO_BATCH)
        else {
            return self.inner.try_send(transmit);
        };
        // Large datagrams (loopback, jumbo frames) in a batch quinn built for small ones:
        // send it as several batches. If a later one would block, the whole transmit is
        // retried; the peer discards the packets it then receives twice.
        for batch in transmit.contents.chunks(gso_batch_len(segment)) {
            self.inner.try_send(&Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: batch,
                segment_size: (batch.len() > segment).then_some(segment),
                src_ip: transmit.src_ip,
            })?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = match self.inner.poll_recv(cx, bufs, meta) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        // Compact the batch in place: QUIC datagrams move down over diverted ones. A GRO
        // batch holds one source's equal-sized datagrams; if it starts with control traffic
        // the whole batch is treated as control (QUIC recovers any packet lost that way).
        let mut kept = 0;
        for i in 0..received {
            let m = meta[i];
            if is_control(&bufs[i][..m.len]) {
                self.divert(m.addr, &bufs[i][..m.len], m.stride);
                continue;
            }
            if kept != i {
                let (head, tail) = bufs.split_at_mut(i);
                head[kept][..m.len].copy_from_slice(&tail[0][..m.len]);
                meta[kept] = m;
            }
            kept += 1;
        }
        Poll::Ready(Ok(kept))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        receive_segments(self.inner.max_receive_segments(), self.max_udp_payload)
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// Bytes of one GSO batch: as many whole segments as fit, and at least one.
fn gso_batch_len(segment: usize) -> usize {
    (MAX_GSO_BATCH / segment.max(1)).max(1) * segment.max(1)
}

/// quinn makes each receive slot `max_udp_payload` times this, following quinn-udp's 64
/// GRO segments; but GRO never delivers more than 64 KiB at once, so fewer segments hold
/// any batch. With large datagrams allowed that keeps the buffer at about 4 MB, not 134.
fn receive_segments(gro_segments: usize, max_udp_payload: usize) -> usize {
    gro_segments
        .min(MAX_GRO_BYTES.div_ceil(max_udp_payload))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_slots_hold_the_largest_gro_batch_and_no_more() {
        for payload in [1200, 1472, 9000, 65_527] {
            let segments = receive_segments(64, payload);
            assert!(segments * payload >= MAX_GRO_BYTES, "{payload}");
            assert!((segments - 1) * payload < MAX_GRO_BYTES, "{payload}");
        }
        // Without GRO quinn-udp reports one segment; a datagram still fits its slot.
        assert_eq!(receive_segments(1, 1472), 1);
    }

    #[test]
    fn gso_batches_stay_within_one_udp_datagram() {
        for segment in [1200, 1452, 9000, 40_000, 65_507] {
            let len = gso_batch_len(segment);
            assert!(len <= MAX_GSO_BATCH, "{segment}");
            assert_eq!(len % segment, 0, "whole segments only");
            assert!(len + segment > MAX_GSO_BATCH, "as many as fit");
        }
        // A segment larger than any batch is sent alone (and fails like any oversized send).
        assert_eq!(gso_batch_len(65_527), 65_527);
    }

    #[test]
    fn quic_packets_are_not_control() {
        // Long header (Initial) and short header packets both carry the fixed bit.
        assert!(!is_control(&[0xC0, 0, 0, 1]));
        assert!(!is_control(&[0x41, 1, 2]));
        assert!(is_control(&[0x00, 0x01, 0, 0]));
        assert!(is_control(&[0x83, b'h']));
        assert!(!is_control(&[]));
    }
}
