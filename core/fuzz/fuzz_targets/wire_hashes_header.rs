//! The header that answers `Hashes` (size, mtime, root), as the requester decodes it.
#![no_main]

harddrive_party_core_fuzz::wire_message_target!(
    harddrive_party_core::wire::HashesHeader,
    harddrive_party_core::wire::MAX_RESPONSE_FRAME
);
