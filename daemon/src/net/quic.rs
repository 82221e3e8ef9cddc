//! The QUIC endpoint: quinn over rustls (TLS 1.3 only, ring provider) with mutual
//! authentication by ed25519 keys. The peer socket is quinn's own batched socket behind a
//! thin demultiplexer (`socket.rs`) that lifts out NAT traversal control datagrams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use tokio::sync::mpsc;

use harddrive_party_core::transport::{
    aes_instructions, on_local_network, suite_plan, use_bbr, Cipher, Congestion, Suite, SuitePlan,
};

use crate::identity::{public_key_from_certificate, Identity, PublicKey};
use crate::net::socket::{ControlDatagram, DemuxSocket};
use crate::wire::ALPN;

/// How long a silent connection lives (at least three keep-alive intervals).
const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// The largest UDP payload we accept and MTU discovery may try (the protocol maximum). A
/// peer probes up to the smaller of its ceiling and our advertised maximum, so both must be
/// raised for loopback and jumbo-frame LANs to carry more than 1472 bytes per datagram.
const MAX_UDP_PAYLOAD: u16 = 65527;
/// MTU discovery's ceiling on sockets other than the peer socket: quinn's default, an
/// Ethernet frame less the IPv6 and UDP headers.
const PLAIN_SOCKET_MTU_CEILING: u16 = 1452;
/// TLS SNI placeholder; peers are identified by key, never by DNS name.
const SERVER_NAME: &str = "harddrive-party";

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
}

/// ring's provider with only the suites of `plan`, in its order.
fn provider(plan: SuitePlan) -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as ring_suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = plan
        .order
        .iter()
        .map(|suite| match suite {
            Suite::Aes128Gcm => ring_suite::TLS13_AES_128_GCM_SHA256,
            Suite::Aes256Gcm => ring_suite::TLS13_AES_256_GCM_SHA384,
            Suite::Chacha20Poly1305 => ring_suite::TLS13_CHACHA20_POLY1305_SHA256,
        })
        .collect();
    Arc::new(provider)
}

/// The transport settings a user can change (`--keep-alive-interval`, `--quic-window`,
/// `--cipher`, `--congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportSettings {
    pub keep_alive: Duration,
    /// Bytes a connection may have in flight each way. It bounds the memory one peer can
    /// make us hold, and caps throughput at window / round-trip time; one stream may use
    /// half of it, so two files can be fetched side by side at full speed.
    pub window: u32,
    pub cipher: Cipher,
    pub congestion: Congestion,
}

/// `mtu_ceiling: None` keeps datagrams at QUIC's 1200-byte floor (the relay path, where a
/// TURN header is added around each one). `local_network`: the peer is on loopback or the
/// LAN (`core::transport::on_local_network`), which picks the congestion controller.
fn transport_config(
    settings: TransportSettings,
    mtu_ceiling: Option<u16>,
    local_network: bool,
) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let window = quinn::VarInt::from_u32(settings.window);
    t.max_idle_timeout(
        MIN_IDLE_TIMEOUT
            .max(settings.keep_alive * 3)
            .try_into()
            .ok(),
    )
    .keep_alive_interval(Some(settings.keep_alive))
    .stream_receive_window(quinn::VarInt::from_u32(settings.window / 2))
    .receive_window(window)
    .send_window(settings.window.into())
    .max_concurrent_bidi_streams(256u32.into())
    .max_concurrent_uni_streams(0u32.into());
    // Probe for large datagrams: loopback and jumbo-frame LANs carry far more per packet
    // (fewer packets to encrypt and acknowledge), and paths that cannot simply fail the probes.
    t.mtu_discovery_config(mtu_ceiling.map(|ceiling| {
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(ceiling);
        mtu
    }));
    if use_bbr(settings.congestion, local_network) {
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    }
    Arc::new(t)
}

fn server_config(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
    suites: SuitePlan,
    transport: Arc<quinn::TransportConfig>,
) -> Result<quinn::ServerConfig, QuicError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider(suites))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.ignore_client_order = suites.server_decides;
    let crypto = QuicServerConfig::try_from(tls).map_err(tls_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport);
    Ok(server)
}

/// Verifies the handshake signature with the key inside the certificate; only ed25519.
fn verify_ed25519(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    let key = public_key_from_certificate(cert).ok_or(rustls::Error::InvalidCertificate(
        rustls::CertificateError::BadEncoding,
    ))?;
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let signature = ed25519_dalek::Signature::from_slice(dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    verifying
        .verify_strict(message, &signature)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// Client side: the server must hold exactly the key from the announce address we dialled.
#[derive(Debug)]
struct ExpectKey(PublicKey);

impl ServerCertVerifier for ExpectKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match public_key_from_certificate(end_entity) {
            Some(key) if key == self.0 => Ok(ServerCertVerified::assertion()),
            Some(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Both verifiers: peers speak TLS 1.3 only.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// Server side: any peer may connect, but it must prove it holds an ed25519 key.
#[derive(Debug)]
struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        public_key_from_certificate(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_ed25519(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The bound endpoint plus what is needed to build per-dial client configs.
pub struct QuicNode {
    pub endpoint: quinn::Endpoint,
    socket: Arc<DemuxSocket>,
    settings: TransportSettings,
    suites: SuitePlan,
    /// The server side for peers on loopback or the LAN; the endpoint's default is the
    /// one for the internet. They differ only in the congestion controller.
    lan_server: Arc<quinn::ServerConfig>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn tls_err(e: impl std::fmt::Display) -> QuicError {
    QuicError::Tls(e.to_string())
}

impl QuicNode {
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        settings: TransportSettings,
    ) -> Result<(Self, mpsc::Receiver<ControlDatagram>), QuicError> {
        let (cert, key) = identity.tls_certificate().map_err(tls_err)?;
        let aes = aes_instructions();
        let suites = suite_plan(settings.cipher, aes);
        tracing::info!(
            "QUIC: cipher {:?} (AES instructions: {aes}) offers {:?}; congestion {:?}: {} on the LAN, {} beyond",
            settings.cipher,
            suites.order,
            settings.congestion,
            controller(settings.congestion, true),
            controller(settings.congestion, false)
        );
        let server = |local| {
            let transport = transport_config(settings, Some(MAX_UDP_PAYLOAD), local);
            server_config(&cert, &key, suites, transport)
        };
        let lan_server = Arc::new(server(true)?);
        let server = server(false)?;
        let socket = bind_socket(addr).map_err(|source| QuicError::Bind { addr, source })?;
        let (socket, control) = DemuxSocket::wrap(socket, MAX_UDP_PAYLOAD)
            .map_err(|source| QuicError::Bind { addr, source })?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            endpoint_config(Some(MAX_UDP_PAYLOAD)),
            Some(server),
            socket.clone(),
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| QuicError::Bind { addr, source })?;
        Ok((
            Self {
                endpoint,
                socket,
                settings,
                suites,
                lan_server,
                cert,
                key,
            },
            control,
        ))
    }

    /// A second endpoint, accepting like the main one, on a TURN-relayed socket.
    pub fn relay_endpoint(
        &self,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
    ) -> std::io::Result<quinn::Endpoint> {
        let transport = transport_config(self.settings, None, false);
        let server = server_config(&self.cert, &self.key, self.suites, transport)
            .map_err(std::io::Error::other)?;
        quinn::Endpoint::new_with_abstract_socket(
            endpoint_config(None),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
    }

    /// Accepts an inbound connection on the main endpoint with the congestion controller
    /// its address calls for.
    pub fn accept(
        &self,
        incoming: quinn::Incoming,
    ) -> Result<quinn::Connecting, quinn::ConnectionError> {
        if on_local_network(incoming.remote_address().ip()) {
            incoming.accept_with(self.lan_server.clone())
        } else {
            incoming.accept()
        }
    }

    pub fn socket(&self) -> Arc<DemuxSocket> {
        self.socket.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    fn client_config(
        &self,
        expected_key: PublicKey,
        transport: Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, QuicError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(provider(self.suites))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExpectKey(expected_key)))
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(tls_err)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(tls_err)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    /// Dials `addr` and succeeds only if the peer proves it holds `expected_key`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected_key: PublicKey,
    ) -> Result<quinn::Connection, QuicError> {
        let local = on_local_network(addr.ip());
        let transport = transport_config(self.settings, Some(MAX_UDP_PAYLOAD), local);
        let config = self.client_config(expected_key, transport)?;
        dial(&self.endpoint, config, addr).await
    }

    /// Dials from `endpoint` (our TURN relay's), with the relay path's 1200-byte packets.
    pub async fn connect_on(
        &self,
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        expected_key: PublicKey,
    ) -> Result<quinn::Connection, QuicError> {
        let transport = transport_config(self.settings, None, on_local_network(addr.ip()));
        dial(endpoint, self.client_config(expected_key, transport)?, addr).await
    }

    /// Dials from a separate socket that a birthday punch opened (its NAT mapping is the
    /// one the peer can reach). The client-only endpoint lives as long as the connection.
    pub async fn connect_from(
        &self,
        socket: std::net::UdpSocket,
        addr: SocketAddr,
        expected_key: PublicKey,
    ) -> Result<quinn::Connection, QuicError> {
        let local = socket.local_addr().unwrap_or(addr);
        let endpoint = quinn::Endpoint::new(
            endpoint_config(None),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| QuicError::Bind {
            addr: local,
            source,
        })?;
        // A plain quinn socket does not split GSO batches larger than one UDP datagram
        // (`DemuxSocket` does), so datagrams stay at quinn's usual ceiling here.
        let local = on_local_network(addr.ip());
        let transport = transport_config(self.settings, Some(PLAIN_SOCKET_MTU_CEILING), local);
        dial(
            &endpoint,
            self.client_config(expected_key, transport)?,
            addr,
        )
        .await
    }
}

async fn dial(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<quinn::Connection, QuicError> {
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| QuicError::Connect {
            addr,
            reason: e.to_string(),
        })?;
    connecting.await.map_err(|e| QuicError::Connect {
        addr,
        reason: e.to_string(),
    })
}

/// Never grease the QUIC fixed bit: the peer socket tells QUIC from STUN and punch probes
/// by that bit (RFC 9287 greasing is only advertised, so peers honour this).
/// `max_udp_payload: None` keeps quinn's 1472 bytes: for sockets other than the peer
/// socket, whose receive buffers `DemuxSocket` does not size (quinn would allocate the
/// payload times 64 GRO segments times 32 slots).
fn endpoint_config(max_udp_payload: Option<u16>) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.grease_quic_bit(false);
    if let Some(payload) = max_udp_payload {
        // Only values below 1200 are refused, and the constant is far above that.
        let _ = config.max_udp_payload_size(payload);
    }
    config
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Bigger kernel buffers absorb bursts at high rates; the kernel caps them at rmem_max/wmem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn controller(choice: Congestion, local_network: bool) -> &'static str {
    if use_bbr(choice, local_network) {
        "BBR"
    } else {
        "CUBIC"
    }
}

/// The TLS 1.3 cipher suite this connection's handshake chose.
pub fn cipher_suite(conn: &quinn::Connection) -> Option<rustls::CipherSuite> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .negotiated_cipher_suite
}

/// The peer's key and a fingerprint of the exact certificate it presented on this
/// connection. A new fingerprint for a known key means the peer process restarted.
pub fn peer_identity(conn: &quinn::Connection) -> Option<(PublicKey, [u8; 32])> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let cert = certs.first()?;
    Some((
        public_key_from_certificate(cert)?,
        *blake3::hash(cert).as_bytes(),
    ))
}
