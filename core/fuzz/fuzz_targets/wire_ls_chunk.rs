//! A listing chunk, the answer to `Ls`, as the requester decodes it.
#![no_main]

harddrive_party_core_fuzz::wire_message_target!(
    harddrive_party_core::wire::LsChunk,
    harddrive_party_core::wire::MAX_RESPONSE_FRAME
);
