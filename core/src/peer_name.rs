//! Peer names: the human-readable name every node derives from its public key
//! (PROTOCOL.md, "Peer names").

/// An ed25519 public key, as carried in certificates and announce addresses.
pub type PublicKey = [u8; 32];

const ADJECTIVES: [&str; 64] = [
    "Amber", "Arctic", "Azure", "Bold", "Brave", "Breezy", "Bright", "Calm", "Clever", "Cosmic",
    "Crimson", "Curious", "Dapper", "Dusky", "Eager", "Electric", "Fancy", "Fearless", "Fluffy",
    "Frosty", "Gentle", "Gilded", "Glad", "Golden", "Happy", "Hidden", "Humble", "Icy", "Indigo",
    "Jolly", "Keen", "Lucky", "Lunar", "Mellow", "Merry", "Misty", "Nimble", "Noble", "Olive",
    "Peppy", "Plucky", "Polar", "Proud", "Quiet", "Rapid", "Rosy", "Rusty", "Shiny", "Silent",
    "Silver", "Sleepy", "Snowy", "Solar", "Spry", "Stormy", "Sunny", "Swift", "Tidy", "Velvet",
    "Vivid", "Wild", "Windy", "Witty", "Zesty",
];

const ANIMALS: [&str; 64] = [
    "Albatross",
    "Alpaca",
    "Badger",
    "Bat",
    "Beaver",
    "Bison",
    "Bobcat",
    "Camel",
    "Capybara",
    "Caribou",
    "Cheetah",
    "Chinchilla",
    "Cobra",
    "Condor",
    "Cougar",
    "Coyote",
    "Crane",
    "Dingo",
    "Dolphin",
    "Eagle",
    "Falcon",
    "Ferret",
    "Finch",
    "Fox",
    "Gazelle",
    "Gecko",
    "Gibbon",
    "Heron",
    "Hippo",
    "Ibex",
    "Iguana",
    "Jackal",
    "Jaguar",
    "Koala",
    "Lemur",
    "Leopard",
    "Llama",
    "Lynx",
    "Marmot",
    "Meerkat",
    "Mink",
    "Moose",
    "Narwhal",
    "Ocelot",
    "Octopus",
    "Orca",
    "Otter",
    "Owl",
    "Panda",
    "Pelican",
    "Penguin",
    "Puffin",
    "Quokka",
    "Raccoon",
    "Raven",
    "Salamander",
    "Seal",
    "Sloth",
    "Tapir",
    "Toucan",
    "Walrus",
    "Weasel",
    "Wombat",
    "Yak",
];

/// `Adjective` + `Animal` + six hex digits, all taken from the first five key bytes
/// (36 bits; see PROTOCOL.md, "Peer names"). Names are for people; connections are always
/// checked against the full key.
pub fn peer_name(public_key: &PublicKey) -> String {
    format!(
        "{}{}{:02x}{:02x}{:02x}",
        ADJECTIVES[(public_key[0] % 64) as usize],
        ANIMALS[(public_key[1] % 64) as usize],
        public_key[2],
        public_key[3],
        public_key[4]
    )
}
