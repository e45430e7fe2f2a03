//! Names that identify a person or a machine, as property names or context path segments.

/// Names that identify a person or a machine. No catalog may keep a context path with one of
/// them as a segment, and without a catalog no property of that name is stored; compared
/// case-insensitively, with `-` read as `_`.
pub const IDENTIFYING_NAMES: [&str; 24] = [
    "ip",
    "ip_address",
    "ipaddress",
    "host",
    "hostname",
    "host_name",
    "email",
    "e_mail",
    "mail",
    "user",
    "username",
    "user_name",
    "userid",
    "user_id",
    "mac",
    "mac_address",
    "path",
    "filepath",
    "file_path",
    "filename",
    "cwd",
    "home",
    "useragent",
    "user_agent",
];

/// The longest property name stored without a catalog.
const MAX_OPEN_PROPERTY_NAME: usize = 100;

/// True when `name` is one of [`IDENTIFYING_NAMES`], in any case, `-` read as `_`.
pub fn is_identifying(name: &str) -> bool {
    let folded = |b: u8| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_lowercase()
        }
    };
    IDENTIFYING_NAMES
        .iter()
        .any(|n| n.len() == name.len() && n.bytes().zip(name.bytes()).all(|(a, b)| a == folded(b)))
}

/// Words that make a property name identifying wherever they stand in it (`client_ip`,
/// `emailAddress`, `user.email`, `remote_addr`, `anonymousId`), compared with each word of the
/// name split at `_ . -` and at lower-to-upper case changes.
pub const IDENTIFYING_WORDS: [&str; 33] = [
    "ip",
    "ipv4",
    "ipv6",
    "ipaddr",
    "ipaddress",
    "addr",
    "address",
    "email",
    "mail",
    "host",
    "hostname",
    "user",
    "username",
    "login",
    "uid",
    "account",
    "phone",
    "ssn",
    "machine",
    "mac",
    "path",
    "filepath",
    "file",
    "filename",
    "dir",
    "directory",
    "cwd",
    "home",
    "url",
    "uri",
    "referrer",
    "agent",
    "id",
];

/// True when any word of an ASCII property name is in [`IDENTIFYING_WORDS`] (in any case): the
/// name split at anything but letters and digits, and where a lowercase letter or a digit is
/// followed by an uppercase one. Allocates nothing: it runs for every property of every event.
fn has_identifying_word(name: &str) -> bool {
    let bytes = name.as_bytes();
    let identifying = |w: &[u8]| {
        !w.is_empty()
            && IDENTIFYING_WORDS
                .iter()
                .any(|i| i.as_bytes().eq_ignore_ascii_case(w))
    };
    let mut start = 0;
    for i in 0..bytes.len() {
        let b = bytes[i];
        if !b.is_ascii_alphanumeric() {
            if identifying(&bytes[start..i]) {
                return true;
            }
            start = i + 1;
        } else if b.is_ascii_uppercase()
            && i > start
            && (bytes[i - 1].is_ascii_lowercase() || bytes[i - 1].is_ascii_digit())
        {
            if identifying(&bytes[start..i]) {
                return true;
            }
            start = i;
        }
    }
    identifying(&bytes[start..])
}

/// True when a property name may be stored without a catalog: an ASCII identifier (a letter or
/// `_`, then letters, digits, `_ . -`, at most 100 characters) none of whose words identify.
pub fn is_open_property_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let starts = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    starts
        && name.len() <= MAX_OPEN_PROPERTY_NAME
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !is_identifying(name)
        && !has_identifying_word(name)
}

/// Whether `name` can be an app's name as the SDKs take it (the name of its state folder and its
/// entry in the user's config file): 1 to 100 ASCII letters, digits, `.`, `-` or `_`, not
/// starting with a `.`.
pub fn is_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}
