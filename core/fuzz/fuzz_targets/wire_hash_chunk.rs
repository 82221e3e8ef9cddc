//! One chunk of piece hashes after a `HashesHeader`, as the requester decodes it.
#![no_main]

harddrive_party_core_fuzz::wire_message_target!(
    harddrive_party_core::wire::HashChunk,
    harddrive_party_core::wire::MAX_RESPONSE_FRAME
);
