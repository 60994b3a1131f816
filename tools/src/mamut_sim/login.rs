//! Prelogin and LOGIN7. The prelogin's ENCRYPTION option is answered as SQL Server answers it
//! (MS-TDS 2.2.6.5) from the client's setting and the server's: no certificate
//! (`ENCRYPT_NOT_SUP`), a certificate (`ENCRYPT_OFF`: at least the login is encrypted), or a
//! certificate with "force encryption" (`ENCRYPT_REQ`). The INSTOPT option is validated against
//! the instance name the stand-in serves. The SQL login is checked against the configured
//! credentials and the packet size the client asks for is granted within SQL Server's bounds.

use bytes::{BufMut, BytesMut};

use super::wire;

pub const ENCRYPT_OFF: u8 = 0x00;
pub const ENCRYPT_ON: u8 = 0x01;
pub const ENCRYPT_NOT_SUP: u8 = 0x02;
pub const ENCRYPT_REQ: u8 = 0x03;
/// TDS 8.0's client-certificate flag, OR'd onto the base setting.
const ENCRYPT_CLIENT_CERT: u8 = 0x80;

const OPTION_VERSION: u8 = 0x00;
const OPTION_ENCRYPTION: u8 = 0x01;
const OPTION_INSTOPT: u8 = 0x02;
const OPTION_THREADID: u8 = 0x03;
const OPTION_MARS: u8 = 0x04;
const OPTION_TERMINATOR: u8 = 0xFF;

/// The product version the stand-in reports: SQL Server 2022 RTM, 16.0.1000.6.
pub const SERVER_VERSION: [u8; 4] = [16, 0, 0x03, 0xE8];

/// What the client's PRELOGIN says (the options the stand-in acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPrelogin {
    /// B_FENCRYPTION without the TDS 8.0 client-certificate bit.
    pub encryption: u8,
    /// INSTOPT: the instance the client wants, empty for "any"/the default one.
    pub instance: String,
}

/// The server's encryption setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEncryption {
    /// No certificate: encryption not supported.
    NotSupported,
    /// A certificate: clients choose; the login is always encrypted.
    Available,
    /// A certificate and "force encryption": every connection is encrypted whole.
    Forced,
}

/// How a connection goes on after the prelogin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// No TLS at all.
    Plain,
    /// TLS for the LOGIN7 packet only, plain text after it (`ENCRYPT_OFF` both sides).
    LoginOnly,
    /// TLS for the whole connection.
    Encrypted,
    /// The answer is sent and the connection closed: the two settings are incompatible.
    Refused,
}

/// Reads the client's PRELOGIN: option headers (token, big-endian offset and length) up to the
/// terminator, every offset bounds-checked; options the stand-in does not act on are skipped.
pub fn parse_prelogin(data: &[u8]) -> Result<ClientPrelogin, String> {
    let mut encryption = None;
    let mut instance = String::new();
    let mut at = 0;
    loop {
        let token = *data
            .get(at)
            .ok_or("PRELOGIN ends before its option terminator")?;
        if token == OPTION_TERMINATOR {
            break;
        }
        let header = data
            .get(at + 1..at + 5)
            .ok_or("PRELOGIN option header truncated")?;
        let offset = usize::from(u16::from_be_bytes([header[0], header[1]]));
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = data
            .get(offset..offset + length)
            .ok_or_else(|| format!("PRELOGIN option 0x{token:02X} points outside the message"))?;
        match token {
            OPTION_ENCRYPTION => {
                let byte = *value.first().ok_or("PRELOGIN ENCRYPTION option is empty")?;
                encryption = Some(byte & !ENCRYPT_CLIENT_CERT);
            }
            OPTION_INSTOPT => {
                let name = value.split(|&b| b == 0).next().unwrap_or_default();
                instance = String::from_utf8_lossy(name).into_owned();
            }
            _ => {}
        }
        at += 5;
    }
    Ok(ClientPrelogin {
        // A client that sends no ENCRYPTION option is one that knows no encryption.
        encryption: encryption.unwrap_or(ENCRYPT_NOT_SUP),
        instance,
    })
}

/// The server's B_FENCRYPTION answer and what follows, per MS-TDS 2.2.6.5.
pub fn negotiate(client: u8, server: ServerEncryption) -> (u8, Negotiated) {
    let client_wants = matches!(client, ENCRYPT_ON | ENCRYPT_REQ);
    match server {
        ServerEncryption::NotSupported if client_wants => (ENCRYPT_NOT_SUP, Negotiated::Refused),
        ServerEncryption::NotSupported => (ENCRYPT_NOT_SUP, Negotiated::Plain),
        ServerEncryption::Available if client_wants => (ENCRYPT_ON, Negotiated::Encrypted),
        ServerEncryption::Available if client == ENCRYPT_OFF => {
            (ENCRYPT_OFF, Negotiated::LoginOnly)
        }
        ServerEncryption::Available => (ENCRYPT_NOT_SUP, Negotiated::Plain),
        ServerEncryption::Forced if client == ENCRYPT_NOT_SUP => (ENCRYPT_REQ, Negotiated::Refused),
        ServerEncryption::Forced if client_wants => (ENCRYPT_ON, Negotiated::Encrypted),
        ServerEncryption::Forced => (ENCRYPT_REQ, Negotiated::Encrypted),
    }
}

/// Whether the instance a client names is the one served (`served` = `None`: the default
/// instance, MSSQLSERVER). An empty name asks for no particular instance.
pub fn instance_matches(requested: &str, served: Option<&str>) -> bool {
    requested.is_empty() || requested.eq_ignore_ascii_case(served.unwrap_or("MSSQLSERVER"))
}

/// The server's PRELOGIN answer: VERSION, ENCRYPTION, INSTOPT (0x00 valid, 0x01 not),
/// THREADID (empty, as the server sends it) and MARS off.
pub fn prelogin_response(encryption: u8, instance_valid: bool) -> Vec<u8> {
    let mut data = BytesMut::new();
    let mut options: Vec<(u8, usize)> = Vec::new();
    data.put_slice(&SERVER_VERSION);
    data.put_u16(0); // sub-build
    options.push((OPTION_VERSION, 6));
    data.put_u8(encryption);
    options.push((OPTION_ENCRYPTION, 1));
    data.put_u8(u8::from(!instance_valid));
    options.push((OPTION_INSTOPT, 1));
    options.push((OPTION_THREADID, 0));
    data.put_u8(0);
    options.push((OPTION_MARS, 1));
    let mut out = BytesMut::new();
    let mut offset = options.len() * 5 + 1;
    for (token, length) in options {
        out.put_u8(token);
        out.put_u16(offset as u16);
        out.put_u16(length as u16);
        offset += length;
    }
    out.put_u8(OPTION_TERMINATOR);
    out.put_slice(&data);
    out.to_vec()
}

/// What a LOGIN7 record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub tds_version: u32,
    /// The packet size the client asks for (0: the server's default).
    pub packet_size: u32,
    /// Integrated (Windows) authentication asked: OptionFlags2's fIntSecurity.
    pub integrated: bool,
    pub user: String,
    pub password: String,
    pub database: String,
}

fn u16_at(data: &[u8], at: usize) -> Result<usize, String> {
    data.get(at..at + 2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or_else(|| "LOGIN7 record too short".to_string())
}

/// The string whose offset/length pair sits at `at`; `transform` undoes obfuscation.
fn field(data: &[u8], at: usize, transform: impl Fn(u8) -> u8) -> Result<String, String> {
    let offset = u16_at(data, at)?;
    let chars = u16_at(data, at + 2)?;
    let bytes = data
        .get(offset..offset + chars * 2)
        .ok_or("LOGIN7 field out of bounds")?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([transform(c[0]), transform(c[1])]))
        .collect();
    String::from_utf16(&units).map_err(|_| "LOGIN7 field is not UTF-16".to_string())
}

/// Undoes the LOGIN7 password obfuscation: XOR 0xA5, then swap the nibbles.
fn unscramble(byte: u8) -> u8 {
    (byte ^ 0xA5).rotate_left(4)
}

pub fn parse_login(data: &[u8]) -> Result<Login, String> {
    if data.len() < 94 {
        return Err("LOGIN7 record too short".into());
    }
    let tds_version = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let packet_size = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    Ok(Login {
        tds_version,
        packet_size,
        integrated: data[25] & 0x80 != 0,
        user: field(data, 40, |b| b)?,
        password: field(data, 44, unscramble)?,
        database: field(data, 68, |b| b)?,
    })
}

/// The packet size granted for what the client asks: SQL Server's default for 0, else the
/// request held within 512..=32767.
pub fn granted_packet_size(requested: u32) -> usize {
    match requested {
        0 => wire::PACKET_SIZE,
        n => usize::try_from(n)
            .unwrap_or(wire::MAX_PACKET_SIZE)
            .clamp(wire::MIN_PACKET_SIZE, wire::MAX_PACKET_SIZE),
    }
}

/// The server's answer to an accepted login, granting `packet_size`.
pub fn login_accepted(login: &Login, database: &str, packet_size: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_envchange_text(&mut out, 1, database, "master");
    // Latin1_General_CI_AS: LCID 0x0409 with the usual flags, sort id 0x34.
    wire::put_envchange_bytes(&mut out, 7, &[0x09, 0x04, 0xD0, 0x00, 0x34], &[]);
    wire::put_envchange_text(
        &mut out,
        4,
        &packet_size.to_string(),
        &wire::PACKET_SIZE.to_string(),
    );
    wire::put_login_ack(&mut out, login.tds_version);
    wire::put_done(&mut out, 0xFD, 0, 0);
    out.to_vec()
}

/// The server's answer to a refused login: error 18456, as SQL Server answers.
pub fn login_refused(user: &str) -> Vec<u8> {
    login_error(18456, 14, &format!("Login failed for user '{user}'."))
}

/// A login refused with error `number`, e.g. 4060 for a database the server does not have or
/// 18452 for an integrated login the server cannot verify.
pub fn login_error(number: u32, class: u8, message: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_error(&mut out, number, class, message);
    wire::put_done(&mut out, 0xFD, wire::DONE_ERROR, 0);
    out.to_vec()
}

/// Why a LOGIN7 is refused, as SQL Server refuses it; `None` when it is accepted.
pub fn refusal(login: &Login, user: &str, password: &str, database: &str) -> Option<Vec<u8>> {
    if login.integrated {
        return Some(login_error(
            18452,
            14,
            "Login failed. The login is from an untrusted domain and cannot be used with \
             Integrated authentication.",
        ));
    }
    if login.user != user || login.password != password {
        return Some(login_refused(&login.user));
    }
    if !login.database.is_empty() && !login.database.eq_ignore_ascii_case(database) {
        return Some(login_error(
            4060,
            11,
            &format!(
                "Cannot open database \"{}\" requested by the login. The login failed.",
                login.database
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client PRELOGIN as tiberius writes it: VERSION, ENCRYPTION, INSTOPT, THREADID, MARS.
    fn client_prelogin(encryption: u8, instance: &str) -> Vec<u8> {
        let mut data = vec![0x10, 0, 0, 0, 0, 0, encryption];
        data.extend_from_slice(instance.as_bytes());
        data.push(0);
        data.extend_from_slice(&[0, 0, 0, 1, 0]);
        let lengths = [6, 1, instance.len() + 1, 4, 1];
        let mut out = Vec::new();
        let mut offset = lengths.len() * 5 + 1;
        for (token, length) in [0u8, 1, 2, 3, 4].into_iter().zip(lengths) {
            out.push(token);
            out.extend_from_slice(&(offset as u16).to_be_bytes());
            out.extend_from_slice(&(length as u16).to_be_bytes());
            offset += length;
        }
        out.push(0xFF);
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn a_client_prelogin_yields_its_encryption_and_instance() {
        let parsed = parse_prelogin(&client_prelogin(ENCRYPT_REQ, "MAMUT")).expect("parses");
        assert_eq!(
            parsed,
            ClientPrelogin {
                encryption: ENCRYPT_REQ,
                instance: "MAMUT".into()
            }
        );
    }

    #[test]
    fn a_truncated_or_lying_prelogin_is_an_error_not_a_panic() {
        let whole = client_prelogin(ENCRYPT_ON, "X");
        for len in 0..whole.len() {
            let _ = parse_prelogin(&whole[..len]);
        }
        assert!(parse_prelogin(&[0x01, 0xFF, 0xFF, 0x00, 0x01, 0xFF]).is_err());
        assert!(parse_prelogin(&[]).is_err());
    }

    #[test]
    fn encryption_is_negotiated_as_ms_tds_2_2_6_5_says() {
        use Negotiated::*;
        use ServerEncryption::*;
        let cases = [
            (ENCRYPT_OFF, NotSupported, ENCRYPT_NOT_SUP, Plain),
            (ENCRYPT_NOT_SUP, NotSupported, ENCRYPT_NOT_SUP, Plain),
            (ENCRYPT_ON, NotSupported, ENCRYPT_NOT_SUP, Refused),
            (ENCRYPT_REQ, NotSupported, ENCRYPT_NOT_SUP, Refused),
            (ENCRYPT_OFF, Available, ENCRYPT_OFF, LoginOnly),
            (ENCRYPT_NOT_SUP, Available, ENCRYPT_NOT_SUP, Plain),
            (ENCRYPT_ON, Available, ENCRYPT_ON, Encrypted),
            (ENCRYPT_REQ, Available, ENCRYPT_ON, Encrypted),
            (ENCRYPT_OFF, Forced, ENCRYPT_REQ, Encrypted),
            (ENCRYPT_NOT_SUP, Forced, ENCRYPT_REQ, Refused),
            (ENCRYPT_ON, Forced, ENCRYPT_ON, Encrypted),
            (ENCRYPT_REQ, Forced, ENCRYPT_ON, Encrypted),
        ];
        for (client, server, answer, then) in cases {
            assert_eq!(
                negotiate(client, server),
                (answer, then),
                "client {client:#04x}, server {server:?}"
            );
        }
    }

    #[test]
    fn the_prelogin_answer_decodes_with_the_named_instance_valid_or_not() {
        for valid in [true, false] {
            let answer = prelogin_response(ENCRYPT_ON, valid);
            let decoded = tds_protocol::PreLogin::decode(&answer[..]).expect("decodes");
            assert_eq!(decoded.encryption, tds_protocol::EncryptionLevel::On);
            let ours = parse_prelogin(&answer).expect("parses");
            assert_eq!(ours.instance, if valid { "" } else { "\u{1}" });
        }
        assert!(instance_matches("", Some("MAMUT")));
        assert!(instance_matches("mamut", Some("MAMUT")));
        assert!(instance_matches("MSSQLSERVER", None));
        assert!(!instance_matches("OTHER", Some("MAMUT")));
    }

    #[test]
    fn the_packet_size_asked_is_granted_within_sql_servers_bounds() {
        assert_eq!(granted_packet_size(0), 4096);
        assert_eq!(granted_packet_size(8192), 8192);
        assert_eq!(granted_packet_size(100), 512);
        assert_eq!(granted_packet_size(1_000_000), 32767);
    }

    #[test]
    fn unscrambling_inverts_the_login7_obfuscation() {
        let scramble = |b: u8| b.rotate_left(4) ^ 0xA5;
        for byte in 0..=255u8 {
            assert_eq!(unscramble(scramble(byte)), byte);
        }
    }
}
