//! Web UI authentication: the password (an argon2id hash in the store's settings), the
//! one-time setup code that guards setting the first password, sessions (an HttpOnly cookie
//! plus a per-session CSRF token), login throttling, and the Host/Origin checks that stop
//! DNS rebinding. HTTP wiring lives in `api.rs`; this module holds the state and the rules.

mod password;

use crate::locks::lock;
use harddrive_party_core::http_guard::search_domains;
use harddrive_party_core::http_guard::AttemptLimiter;
pub use harddrive_party_core::http_guard::{constant_time_eq, AllowedHosts, HostError};
use password::check_password_shape;
pub use password::{hash_password, read_new_password, verify_password};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::identity::{random_bytes, write_private_file};
use crate::store::{Store, StoreError, UiSession};

pub const SETUP_CODE_FILE: &str = "setup-code";
/// Settings key holding the PHC string of the argon2id password hash.
const PASSWORD_SETTING: &str = "ui_password_hash";
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// A session unused for this long ends.
const SESSION_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// No session lives longer than this.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// The oldest session is dropped beyond this many.
const MAX_SESSIONS: usize = 64;
/// How stale the stored last-use time of a session may get: writing it on every request
/// would cost a database commit per request, and the idle limit is days.
const SESSION_TOUCH_SECS: u64 = 3600;
/// Separates CSRF tokens from every other use of BLAKE3 on session tokens.
const CSRF_CONTEXT: &str = "harddrive-party 2025 web UI CSRF token";
/// Characters of setup codes: no 0/O, 1/I/L to misread on a phone.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const CODE_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("wrong password")]
    WrongPassword,
    #[error("wrong setup code (it is in the daemon log and in <storage>/setup-code)")]
    WrongSetupCode,
    #[error("a password is already set: log in instead")]
    AlreadySet,
    #[error("no password is set yet: set one with the setup code")]
    NotSet,
    #[error("too many attempts: try again in {0} s")]
    Throttled(u64),
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes")]
    BadPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] crate::identity::IdentityError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot read the password: {0}")]
    Read(std::io::Error),
    #[error("the passwords do not match")]
    Mismatch,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kernel's host name, which the LAN's DNS usually knows this machine by.
pub(crate) fn machine_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Upper-case, without spaces and dashes: the form codes are compared in.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// A session as kept in memory; the store holds the same times under the token's hash.
struct Session {
    /// Unix seconds.
    created: u64,
    last_used: u64,
    /// `last_used` as last written to the store.
    saved_last_used: u64,
}

impl Session {
    fn record(&self) -> UiSession {
        UiSession {
            created: self.created,
            last_used: self.last_used,
        }
    }
}

/// What a request's session cookie resolved to.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The cookie value (needed to log out).
    pub id: String,
    pub csrf: String,
}

pub struct Auth {
    store: Arc<Store>,
    storage: PathBuf,
    loopback: bool,
    port: u16,
    pub hosts: AllowedHosts,
    password_hash: RwLock<Option<String>>,
    setup_code: Mutex<Option<String>>,
    /// Keyed by the BLAKE3 hash of the session id, so neither the map nor the store ever
    /// holds cookie values. Every store write happens under this lock, so a logout cannot
    /// race a last-use refresh that would bring the session back after a restart.
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<AttemptLimiter>,
    /// At most two argon2 computations (about 19 MiB each) at a time.
    hashing: tokio::sync::Semaphore,
}

impl Auth {
    /// Loads the password hash; without one, makes a fresh setup code, logs it and writes
    /// it to `<storage>/setup-code` (mode 0600).
    pub fn new(
        store: Arc<Store>,
        storage: &Path,
        listen: SocketAddr,
        extra_hosts: &[String],
    ) -> Result<Self, AuthError> {
        let password_hash = store.setting(PASSWORD_SETTING)?;
        let code_path = storage.join(SETUP_CODE_FILE);
        let setup_code = if password_hash.is_none() {
            let raw = random_bytes::<CODE_CHARS>()?;
            let code: String = raw
                .iter()
                .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
                .collect();
            write_private_file(&code_path, format!("{code}\n").as_bytes()).map_err(|source| {
                AuthError::Io {
                    path: code_path.clone(),
                    source,
                }
            })?;
            tracing::warn!(
                "no web UI password yet: open the web UI and set one with the setup code {code} (also in {})",
                code_path.display()
            );
            Some(code)
        } else {
            remove_file(&code_path);
            None
        };
        let sessions = load_sessions(&store, unix_now())?;
        Ok(Self {
            store,
            storage: storage.to_path_buf(),
            loopback: listen.ip().is_loopback(),
            port: listen.port(),
            hosts: AllowedHosts::new(
                listen,
                machine_hostname().as_deref(),
                &search_domains(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
                extra_hosts,
            ),
            password_hash: RwLock::new(password_hash),
            setup_code: Mutex::new(setup_code),
            sessions: Mutex::new(sessions),
            limiter: Mutex::new(AttemptLimiter::default()),
            hashing: tokio::sync::Semaphore::new(2),
        })
    }

    pub fn password_set(&self) -> bool {
        self.password_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether the API listens on loopback only.
    pub fn loopback(&self) -> bool {
        self.loopback
    }

    /// Whether requests without a session or token are refused. On loopback, without a
    /// password, reads stay open (as before the UI had a login).
    pub fn login_required(&self) -> bool {
        self.password_set() || !self.loopback
    }

    /// The session cookie's name carries the port: browsers share cookies across ports.
    pub fn cookie_name(&self) -> String {
        format!("hdp_session_{}", self.port)
    }

    pub fn setup_code_path(&self) -> PathBuf {
        self.storage.join(SETUP_CODE_FILE)
    }

    fn throttle(&self, client: IpAddr) -> Result<(), AuthError> {
        lock(&self.limiter)
            .attempt(client, Instant::now())
            .map_err(AuthError::Throttled)
    }

    /// Runs argon2 on a blocking thread, two at a time.
    async fn hashing<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?
    }

    /// Sets the first password; the setup code then stops working.
    pub async fn setup(
        &self,
        client: IpAddr,
        code: &str,
        password: &str,
    ) -> Result<SessionInfo, AuthError> {
        if self.password_set() {
            return Err(AuthError::AlreadySet);
        }
        check_password_shape(password)?;
        self.throttle(client)?;
        let expected = lock(&self.setup_code).clone();
        let given = normalise_code(code);
        match expected {
            Some(expected) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {}
            _ => return Err(AuthError::WrongSetupCode),
        }
        let owned = password.to_string();
        let phc = self.hashing(move || hash_password(&owned)).await?;
        {
            // Only one caller can take the code: a second concurrent setup finds it gone.
            let mut code = lock(&self.setup_code);
            if code.take().is_none() {
                return Err(AuthError::WrongSetupCode);
            }
        }
        self.save_hash(phc)?;
        lock(&self.limiter).succeeded(client);
        tracing::info!("web UI password set with the setup code");
        self.new_session()
    }

    /// Checks the password and opens a session.
    pub async fn login(&self, client: IpAddr, password: &str) -> Result<SessionInfo, AuthError> {
        self.check_password(client, password).await?;
        self.new_session()
    }

    /// Verifies `password` under the attempt limit.
    pub async fn check_password(&self, client: IpAddr, password: &str) -> Result<(), AuthError> {
        let phc = self
            .password_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(AuthError::NotSet)?;
        self.throttle(client)?;
        let owned = password.to_string();
        self.hashing(move || verify_password(&owned, &phc)).await?;
        lock(&self.limiter).succeeded(client);
        Ok(())
    }

    /// Replaces the password and ends every session. Also consumes an unused setup code.
    pub async fn set_password(&self, password: &str) -> Result<(), AuthError> {
        check_password_shape(password)?;
        let owned = password.to_string();
        let phc = self.hashing(move || hash_password(&owned)).await?;
        lock(&self.setup_code).take();
        self.save_hash(phc)?;
        {
            let mut sessions = lock(&self.sessions);
            sessions.clear();
            self.store.clear_ui_sessions()?;
        }
        tracing::info!("web UI password changed; all sessions ended");
        Ok(())
    }

    fn save_hash(&self, phc: String) -> Result<(), AuthError> {
        self.store.set_setting(PASSWORD_SETTING, &phc)?;
        *self
            .password_hash
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(phc);
        remove_file(&self.setup_code_path());
        Ok(())
    }

    pub fn new_session(&self) -> Result<SessionInfo, AuthError> {
        let id = hex(&random_bytes::<32>()?);
        let now = unix_now();
        let mut sessions = lock(&self.sessions);
        let mut gone: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| !live(s, now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            sessions.remove(key);
        }
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
            gone.push(oldest);
        }
        if !gone.is_empty() {
            self.store.remove_ui_sessions(&gone)?;
        }
        let key = session_key(&id);
        let session = Session {
            created: now,
            last_used: now,
            saved_last_used: now,
        };
        self.store.put_ui_session(&key, &session.record(), true)?;
        sessions.insert(key, session);
        Ok(SessionInfo {
            csrf: csrf_token(&id),
            id,
        })
    }

    /// Looks up the session named by a `Cookie:` header, refreshing its idle timer.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<SessionInfo> {
        let name = self.cookie_name();
        let id = cookie_header?
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_string())?;
        let now = unix_now();
        let key = session_key(&id);
        let mut sessions = lock(&self.sessions);
        let session = sessions.get_mut(&key)?;
        if !live(session, now) {
            sessions.remove(&key);
            if let Err(e) = self.store.remove_ui_sessions(&[key]) {
                tracing::warn!("cannot delete an expired web UI session: {e}");
            }
            return None;
        }
        session.last_used = now;
        if now.saturating_sub(session.saved_last_used) >= SESSION_TOUCH_SECS {
            match self.store.put_ui_session(&key, &session.record(), false) {
                Ok(()) => session.saved_last_used = now,
                Err(e) => tracing::warn!("cannot save a web UI session's last use: {e}"),
            }
        }
        Some(SessionInfo {
            csrf: csrf_token(&id),
            id,
        })
    }

    pub fn logout(&self, session: &SessionInfo) -> Result<(), AuthError> {
        let key = session_key(&session.id);
        let mut sessions = lock(&self.sessions);
        sessions.remove(&key);
        self.store.remove_ui_sessions(&[key])?;
        Ok(())
    }

    /// `Set-Cookie` value for a new session (or, with `None`, one that clears it).
    pub fn set_cookie(&self, session: Option<&SessionInfo>, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        match session {
            Some(s) => format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                self.cookie_name(),
                s.id,
                SESSION_LIFETIME.as_secs()
            ),
            None => format!(
                "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
                self.cookie_name()
            ),
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A clock set back makes sessions look younger, never older: they still end by the limits
/// once it catches up.
fn live(s: &Session, now: u64) -> bool {
    now.saturating_sub(s.last_used) < SESSION_IDLE.as_secs()
        && now.saturating_sub(s.created) < SESSION_LIFETIME.as_secs()
}

/// The stored sessions still live at `now`; expired ones are deleted from the store.
fn load_sessions(store: &Store, now: u64) -> Result<HashMap<String, Session>, AuthError> {
    let mut sessions = HashMap::new();
    let mut expired = Vec::new();
    for (key, record) in store.ui_sessions()? {
        let session = Session {
            created: record.created,
            last_used: record.last_used,
            saved_last_used: record.last_used,
        };
        if live(&session, now) {
            sessions.insert(key, session);
        } else {
            expired.push(key);
        }
    }
    if !expired.is_empty() {
        store.remove_ui_sessions(&expired)?;
    }
    Ok(sessions)
}

fn session_key(id: &str) -> String {
    blake3::hash(id.as_bytes()).to_hex().to_string()
}

/// Derived from the session token, so it needs no storage of its own, cannot be computed
/// from the stored hash, and ends with its session.
fn csrf_token(id: &str) -> String {
    hex(&blake3::derive_key(CSRF_CONTEXT, id.as_bytes())[..24])
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_stored_hashed_and_expired_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1 << 20).unwrap());
        let now = unix_now();
        let day = 24 * 3600;
        let old = |created: u64, last_used: u64| UiSession {
            created: now - created,
            last_used: now - last_used,
        };
        store
            .put_ui_session("idle", &old(9 * day, 8 * day), true)
            .unwrap();
        store
            .put_ui_session("ancient", &old(31 * day, 1), true)
            .unwrap();
        store
            .put_ui_session("fresh", &old(2 * day, day), true)
            .unwrap();
        let listen = "127.0.0.1:3030".parse().unwrap();
        let auth = Auth::new(store.clone(), dir.path(), listen, &[]).unwrap();
        let kept: Vec<String> = store
            .ui_sessions()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, ["fresh"], "expired sessions are deleted at load");

        let session = auth.new_session().unwrap();
        assert_eq!(session.csrf, csrf_token(&session.id));
        assert_ne!(session.csrf, auth.new_session().unwrap().csrf);
        let stored: Vec<String> = store
            .ui_sessions()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert!(stored.contains(&session_key(&session.id)));
        assert!(!stored
            .iter()
            .any(|k| k.contains(&session.id) || k.contains(&session.csrf)));

        // A second instance over the same store (a restart) knows the session.
        let cookie = format!("hdp_session_3030={}", session.id);
        let restarted = Auth::new(store.clone(), dir.path(), listen, &[]).unwrap();
        let found = restarted
            .session(Some(&cookie))
            .expect("kept across a restart");
        assert_eq!(found.csrf, session.csrf);
        restarted.logout(&found).unwrap();
        assert!(restarted.session(Some(&cookie)).is_none());
        let again = Auth::new(store, dir.path(), listen, &[]).unwrap();
        assert!(again.session(Some(&cookie)).is_none(), "logout is stored");
    }

    #[test]
    fn hashes_verify_and_codes_normalise() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc).is_ok());
        assert!(verify_password("wrong horse!", &phc).is_err());
        assert!(hash_password("short").is_err());
        assert_eq!(normalise_code(" ab2c-d3ef "), "AB2CD3EF");
    }
}
