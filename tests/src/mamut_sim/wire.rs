//! TDS framing and the server's tokens. Packet headers, prelogin and DONE tokens come from
//! `tds-protocol`; the tokens a client never sends (and so that crate does not encode) are
//! written here, following MS-TDS.

use bytes::{BufMut, BytesMut};
use std::io::{Read, Write};
use tds_protocol::token::{Done, DoneStatus};
use tds_protocol::{PacketHeader, PacketStatus, PacketType};

/// Largest message (all packets of one request) the stand-in accepts.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The packet size the stand-in announces and writes with.
pub const PACKET_SIZE: usize = 4096;

pub const TOKEN_COLMETADATA: u8 = 0x81;
pub const TOKEN_ERROR: u8 = 0xAA;
pub const TOKEN_LOGINACK: u8 = 0xAD;
pub const TOKEN_ROW: u8 = 0xD1;
pub const TOKEN_ENVCHANGE: u8 = 0xE3;
pub const TOKEN_RETURNSTATUS: u8 = 0x79;
pub const TOKEN_DONEPROC: u8 = 0xFE;
pub const TOKEN_DONEINPROC: u8 = 0xFF;

pub const DONE_MORE: u16 = 0x0001;
pub const DONE_ERROR: u16 = 0x0002;
pub const DONE_INXACT: u16 = 0x0004;
pub const DONE_COUNT: u16 = 0x0010;
pub const DONE_ATTN: u16 = 0x0020;

/// Reads one whole message (all packets up to end-of-message). `None` at a clean end of stream.
pub fn read_message<R: Read>(reader: &mut R) -> std::io::Result<Option<(PacketType, Vec<u8>)>> {
    let mut payload = Vec::new();
    let mut kind = None;
    loop {
        let mut header = [0u8; 8];
        match reader.read_exact(&mut header) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && kind.is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        let parsed = PacketHeader::decode(&mut &header[..]).map_err(invalid)?;
        let length = usize::from(parsed.length);
        if length < 8 {
            return Err(invalid("packet shorter than its header"));
        }
        let start = payload.len();
        payload.resize(start + length - 8, 0);
        reader.read_exact(&mut payload[start..])?;
        if payload.len() > MAX_MESSAGE {
            return Err(invalid("message too large"));
        }
        kind.get_or_insert(parsed.packet_type);
        if parsed.status.contains(PacketStatus::END_OF_MESSAGE) {
            return Ok(kind.map(|k| (k, payload)));
        }
    }
}

/// Writes `payload` as a tabular-result message, split into packets.
pub fn write_message<W: Write>(writer: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let chunk = PACKET_SIZE - 8;
    let mut chunks = payload.chunks(chunk).peekable();
    let mut packet_id = 1u8;
    let mut out = BytesMut::with_capacity(payload.len() + 8 * (payload.len() / chunk + 1));
    if chunks.peek().is_none() {
        put_header(&mut out, 0, true, packet_id);
    }
    while let Some(part) = chunks.next() {
        put_header(&mut out, part.len(), chunks.peek().is_none(), packet_id);
        out.put_slice(part);
        packet_id = packet_id.wrapping_add(1);
    }
    writer.write_all(&out)?;
    writer.flush()
}

fn put_header(out: &mut BytesMut, len: usize, last: bool, packet_id: u8) {
    let header = PacketHeader {
        packet_type: PacketType::TabularResult,
        status: if last {
            PacketStatus::END_OF_MESSAGE
        } else {
            PacketStatus::empty()
        },
        length: (len + 8) as u16,
        spid: 0,
        packet_id,
        window: 0,
    };
    header.encode(out);
}

pub fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// UTF-16LE bytes of a string.
pub fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// B_VARCHAR: one byte of length in characters, then UTF-16LE.
pub fn put_b_varchar(out: &mut BytesMut, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(255).collect();
    out.put_u8(units.len() as u8);
    for unit in units {
        out.put_u16_le(unit);
    }
}

/// US_VARCHAR: two bytes of length in characters, then UTF-16LE.
pub fn put_us_varchar(out: &mut BytesMut, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(u16::MAX as usize).collect();
    out.put_u16_le(units.len() as u16);
    for unit in units {
        out.put_u16_le(unit);
    }
}

/// A token whose body starts with a two-byte length.
fn put_with_length(out: &mut BytesMut, token: u8, body: &[u8]) {
    out.put_u8(token);
    out.put_u16_le(body.len() as u16);
    out.put_slice(body);
}

pub fn put_done(out: &mut BytesMut, token: u8, status: u16, row_count: u64) {
    let done = Done {
        status: DoneStatus::from_bits(status),
        cur_cmd: 0xC1,
        row_count,
    };
    let start = out.len();
    done.encode(out);
    // `Done::encode` writes the DONE token byte; DONEPROC and DONEINPROC share its layout.
    out[start] = token;
}

pub fn put_error(out: &mut BytesMut, number: u32, class: u8, message: &str) {
    let mut body = BytesMut::new();
    body.put_u32_le(number);
    body.put_u8(1); // state
    body.put_u8(class);
    put_us_varchar(&mut body, message);
    put_b_varchar(&mut body, "mamut-sim");
    put_b_varchar(&mut body, "");
    body.put_u32_le(1); // line number
    put_with_length(out, TOKEN_ERROR, &body);
}

/// ENVCHANGE with B_VARCHAR values (database, language, packet size).
pub fn put_envchange_text(out: &mut BytesMut, kind: u8, new: &str, old: &str) {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    put_b_varchar(&mut body, new);
    put_b_varchar(&mut body, old);
    put_with_length(out, TOKEN_ENVCHANGE, &body);
}

/// ENVCHANGE with B_VARBYTE values (collation, transaction descriptors).
pub fn put_envchange_bytes(out: &mut BytesMut, kind: u8, new: &[u8], old: &[u8]) {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    body.put_u8(new.len() as u8);
    body.put_slice(new);
    body.put_u8(old.len() as u8);
    body.put_slice(old);
    put_with_length(out, TOKEN_ENVCHANGE, &body);
}

pub fn put_login_ack(out: &mut BytesMut, tds_version: u32) {
    let mut body = BytesMut::new();
    body.put_u8(1); // SQL_TSQL
    body.put_u32(tds_version); // big-endian on the wire
    put_b_varchar(&mut body, "mamut-sim");
    body.put_slice(&[16, 0, 0, 1]); // reports itself as a SQL Server 2022-like 16.0
    put_with_length(out, TOKEN_LOGINACK, &body);
}
