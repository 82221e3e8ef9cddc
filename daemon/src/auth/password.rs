//! Passwords: their shape, the argon2id hash kept in the store, and reading a new one
//! from the terminal for `harddrive-party passwd`.

use std::io::{BufRead, IsTerminal};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::{AuthError, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS};
use crate::identity::random_bytes;

pub(super) fn check_password_shape(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::BadPassword);
    }
    Ok(())
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    check_password_shape(password)?;
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, phc: &str) -> Result<(), AuthError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AuthError::WrongPassword);
    }
    let parsed = PasswordHash::new(phc).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .map_err(|_| AuthError::WrongPassword)
}

/// Reads a new password for `harddrive-party passwd`: from a terminal twice without echo,
/// otherwise the first line of standard input.
pub fn read_new_password() -> Result<String, AuthError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(AuthError::Read)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        check_password_shape(&password)?;
        return Ok(password);
    }
    let first = prompt_hidden("New web UI password: ")?;
    check_password_shape(&first)?;
    let second = prompt_hidden("Repeat it: ")?;
    if first != second {
        return Err(AuthError::Mismatch);
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> Result<String, AuthError> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::Write;
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let saved = tcgetattr(&stdin).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, saved);
    }
    let _ = writeln!(stderr);
    read.map_err(AuthError::Read)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
