//! The inviter's answer to `Join`, as the joiner decodes it.
#![no_main]

harddrive_party_core_fuzz::wire_message_target!(
    harddrive_party_core::wire::JoinReply,
    harddrive_party_core::wire::MAX_RESPONSE_FRAME
);
