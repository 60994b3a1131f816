//! Prelogin and LOGIN7: the stand-in refuses encryption (it is loopback test code) and checks
//! the SQL login against its configured credentials.

use bytes::BytesMut;
use tds_protocol::{EncryptionLevel, PreLogin};

use super::wire;

/// The prelogin answer: no encryption.
pub fn prelogin_response(request: &[u8]) -> Result<Vec<u8>, String> {
    let client = PreLogin::decode(request).map_err(|e| format!("bad prelogin: {e}"))?;
    if matches!(
        client.encryption,
        EncryptionLevel::Required | EncryptionLevel::On
    ) {
        return Err("the client requires encryption; the stand-in supports none".into());
    }
    Ok(PreLogin::new()
        .with_encryption(EncryptionLevel::NotSupported)
        .encode()
        .to_vec())
}

/// What a LOGIN7 record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub tds_version: u32,
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
    Ok(Login {
        tds_version,
        user: field(data, 40, |b| b)?,
        password: field(data, 44, unscramble)?,
        database: field(data, 68, |b| b)?,
    })
}

/// The server's answer to an accepted login.
pub fn login_accepted(login: &Login, database: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_envchange_text(&mut out, 1, database, "master");
    // Latin1_General_CI_AS: LCID 0x0409 with the usual flags, sort id 0x34.
    wire::put_envchange_bytes(&mut out, 7, &[0x09, 0x04, 0xD0, 0x00, 0x34], &[]);
    wire::put_envchange_text(
        &mut out,
        4,
        &wire::PACKET_SIZE.to_string(),
        &wire::PACKET_SIZE.to_string(),
    );
    wire::put_login_ack(&mut out, login.tds_version);
    wire::put_done(&mut out, 0xFD, 0, 0);
    out.to_vec()
}

/// The server's answer to a refused login: error 18456, as SQL Server answers.
pub fn login_refused(user: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire::put_error(
        &mut out,
        18456,
        14,
        &format!("Login failed for user '{user}'."),
    );
    wire::put_done(&mut out, 0xFD, wire::DONE_ERROR, 0);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscrambling_inverts_the_login7_obfuscation() {
        let scramble = |b: u8| b.rotate_left(4) ^ 0xA5;
        for byte in 0..=255u8 {
            assert_eq!(unscramble(scramble(byte)), byte);
        }
    }
}
