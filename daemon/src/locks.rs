//! Locking that survives a panicked holder: every mutex here guards plain data that is
//! valid after any partial update, so a poisoned lock is taken over rather than spreading
//! the panic to every later caller.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
